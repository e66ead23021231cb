/* exp_yaml.h: the experiments configuration the store's tests share (test_exp_log.c, and
 * tests/fuzz/fuzz_exp_store.c): one tenant, the flag new-home (50/50), the experiment home-test
 * with event, path and edge metrics; the store in the directory given as the one %s. */
#ifndef GH_TESTS_EXP_YAML_H
#define GH_TESTS_EXP_YAML_H

/* Everything up to the experiment's metrics, with its first one: also what
 * bench/experiments/ingest.c measures with (its other metrics differ; it defines
 * EXP_YAML_HEAD_ONLY). */
#define EXP_YAML_HEAD                                                       \
    "workers: 1\n"                                                          \
    "access_log: off\n"                                                     \
    "listeners: [{name: http, listen: \"127.0.0.1:1\"}]\n"                  \
    "experiments: {store: \"%s/exp.db\"}\n"                                 \
    "tenants:\n"                                                            \
    "  - name: shop\n"                                                      \
    "    flags:\n"                                                          \
    "      definition:\n"                                                   \
    "        flags:\n"                                                      \
    "          new-home:\n"                                                 \
    "            state: ENABLED\n"                                          \
    "            variants: {\"on\": true, \"off\": false}\n"                \
    "            defaultVariant: \"off\"\n"                                 \
    "            targeting: {fractional: [[\"on\", 50], [\"off\", 50]]}\n"  \
    "    experiments:\n"                                                    \
    "      - id: home-test\n"                                               \
    "        flag: new-home\n"                                              \
    "        variants: [\"off\", \"on\"]\n"                                 \
    "        metrics:\n"                                                    \
    "          - {name: purchase, kind: conversion, event: purchase}\n"

#ifndef EXP_YAML_HEAD_ONLY
static const char YAML[] = EXP_YAML_HEAD
    "          - {name: revenue, kind: mean, event: purchase, value: amount, cuped: true}\n"
    "          - {name: aov, kind: ratio, event: purchase, value: amount, denominator: {event: purchase}}\n"
    "          - {name: checkout, kind: conversion, path: /checkout}\n"
    "          - {name: latency, kind: ratio, edge: latency_ms, denominator: {edge: requests}}\n"
    "          - {name: deep, kind: conversion, path: /checkout/step-two/confirm-the-order-now}\n"
    "    sites: []\n";
#endif

#endif
