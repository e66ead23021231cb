"""Schema evolution of the project's protos (proto/): `buf breaking` (the npm package
@bufbuild/buf, installed into build/js with the other test clients of tests/js/package.json)
compares proto/ with the previous commit's proto/ under proto/buf.yaml's rules (FILE), so a
change that would break a generated client or the wire (a removed or renumbered field, a renamed
message or RPC, a changed type...) fails `make test`. docs/api-versioning.md has the policy.

The previous commit's protos come from `git archive HEAD~1 proto`; with no git history, no
previous commit, or no proto/ in it, there is nothing to compare and the check says so and
passes. GATEHOUSE_PROTO_AGAINST=DIR compares with DIR instead (a proto/ tree)."""

import os
import shutil
import subprocess
import tarfile
import io

import pytest

from helpers import REPO

PROTO = os.path.join(REPO, "proto")


@pytest.fixture(scope="module")
def buf():
    from test_flags import js_clients
    dest = js_clients()
    path = os.path.join(dest, "node_modules", ".bin", "buf")
    assert os.access(path, os.X_OK), "buf is missing from build/js (tests/js/package.json: @bufbuild/buf)"
    return path


def run_buf(buf, *args, cwd=REPO):
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.setdefault("BUF_CACHE_DIR", os.path.join(REPO, "build", "buf-cache"))
    return subprocess.run([buf] + list(args), cwd=cwd, capture_output=True, text=True, timeout=120, env=env)


def previous_protos(tmp):
    """The previous commit's proto/ extracted under tmp, or (None, why)."""
    given = os.environ.get("GATEHOUSE_PROTO_AGAINST")
    if given:
        return given, None
    if not shutil.which("git") or not os.path.isdir(os.path.join(REPO, ".git")):
        return None, "no git history"
    r = subprocess.run(["git", "-C", REPO, "rev-parse", "--verify", "--quiet", "HEAD~1^{commit}"],
                       capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        return None, "no previous commit"
    rev = r.stdout.strip()
    r = subprocess.run(["git", "-C", REPO, "archive", "--format=tar", rev, "proto"], capture_output=True, timeout=60)
    if r.returncode != 0:
        return None, "the previous commit (%s) has no proto/" % rev[:12]
    with tarfile.open(fileobj=io.BytesIO(r.stdout)) as t:
        t.extractall(tmp)
    return os.path.join(tmp, "proto"), None


def test_protos_are_compatible_with_the_previous_commit(buf, tmp_path):
    against, why = previous_protos(str(tmp_path))
    if against is None:
        print("proto breaking check: %s, nothing to compare against: pass" % why)
        return
    r = run_buf(buf, "breaking", PROTO, "--against", against)
    assert r.returncode == 0, "buf breaking: proto/ breaks compatibility with %s:\n%s%s" % (
        os.environ.get("GATEHOUSE_PROTO_AGAINST") or "the previous commit", r.stdout, r.stderr)


def test_the_check_catches_breaking_changes(buf, tmp_path):
    # the guard itself: copies of proto/ with a removed field, a renumbered field and a renamed
    # RPC each fail against proto/; adding a field passes
    base = str(tmp_path / "base")
    shutil.copytree(PROTO, base)
    admin = "gatehouse/admin/v1/admin.proto"
    text = open(os.path.join(base, admin)).read()
    cases = {
        "removed": (text.replace("  bool file_managed = 4;\n  // on the answers", "  // on the answers", 1), 1),
        "renumbered": (text.replace("  string etag = 3;\n  // defined", "  string etag = 30;\n  // defined", 1), 1),
        "renamed": (text.replace("rpc GetTenant(", "rpc FetchTenant(", 1), 1),
        "added": (text.replace("  int64 config_version = 5;\n}", "  int64 config_version = 5;\n  string note = 6;\n}", 1), 0),
    }
    for name, (changed, broken) in cases.items():
        assert changed != text, name
        d = str(tmp_path / name)
        shutil.copytree(PROTO, d)
        with open(os.path.join(d, admin), "w") as f:
            f.write(changed)
        r = run_buf(buf, "breaking", d, "--against", base)
        assert (r.returncode != 0) == bool(broken), "%s: rc %d\n%s%s" % (name, r.returncode, r.stdout, r.stderr)
        if broken:
            assert "admin.proto" in r.stdout + r.stderr, r.stdout + r.stderr
