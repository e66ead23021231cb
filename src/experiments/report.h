/* report.h: experiment results as a readable table. */
#ifndef GH_EXPERIMENTS_REPORT_H
#define GH_EXPERIMENTS_REPORT_H

#include <jansson.h>
#include <stdio.h>

/* Print r (gh_exp_results' JSON) to out; -1 when r is not such a document. */
int gh_exp_print_results(FILE *out, const json_t *r);

#endif
