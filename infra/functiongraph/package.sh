#!/usr/bin/env bash
# Build the FunctionGraph code package for Terraform: build/package/ holds
# main.py, failjob_reaper/, handlers/, the runtime dependencies exactly as
# requirements.lock pins them (the whole tree, hash-checked: what the tests ran),
# as wheels for the FunctionGraph runtime (not for this machine), and
# policy.yaml (POLICY_FILE, default infra/knative/policy.yaml). Terraform then
# zips the directory while it plans.
#
# It builds for the runtime Terraform deploys: FGS_RUNTIME, else TF_VAR_runtime,
# else `runtime = "..."` in terraform.tfvars, else the default of var.runtime
# (variables.tf). build/package/.fgs-runtime records it; Terraform refuses a
# package built for another runtime than var.runtime.
#
#   infra/functiongraph/package.sh                      # var.runtime, x86_64
#   POLICY_FILE=my-policy.yaml infra/functiongraph/package.sh
#   FGS_RUNTIME=Python3.12 FGS_ARCH=aarch64 infra/functiongraph/package.sh
#   infra/functiongraph/package.sh --print-target       # "<runtime> <python version> <arch>", builds nothing
#
# FGS_PACKAGE_DIR (default build/package, what var.package_dir expects) and
# FGS_TFVARS (default terraform.tfvars) move the output and the .tfvars file read.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "${here}/../.." && pwd)"
out="${FGS_PACKAGE_DIR:-${here}/build/package}"
python="${PYTHON:-python3}"
arch="${FGS_ARCH:-x86_64}"
lock="${repo}/requirements.lock"

# The value of `runtime = "..."` in a .tfvars file (empty when not set there).
tfvars_runtime() {
  [ -f "$1" ] || return 0
  sed -n 's/^[[:space:]]*runtime[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' "$1" | tail -n 1
}

# The default of var.runtime in variables.tf.
default_runtime() {
  sed -n '/^variable "runtime" {/,/^}/ s/^[[:space:]]*default[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' \
    "${here}/variables.tf"
}

runtime="${FGS_RUNTIME:-${TF_VAR_runtime:-}}"
[ -n "${runtime}" ] || runtime="$(tfvars_runtime "${FGS_TFVARS:-${here}/terraform.tfvars}")"
[ -n "${runtime}" ] || runtime="$(default_runtime)"
if [[ ! "${runtime}" =~ ^Python([0-9]+\.[0-9]+)$ ]]; then
  echo "runtime '${runtime}': not a FunctionGraph Python runtime (PythonX.Y)" >&2
  exit 2
fi
python_version="${BASH_REMATCH[1]}"

if [ "${1:-}" = "--print-target" ]; then
  echo "${runtime} ${python_version} ${arch}"
  exit 0
fi

policy="${POLICY_FILE:-${repo}/infra/knative/policy.yaml}"
[ -f "${policy}" ] || { echo "POLICY_FILE ${policy}: no such file" >&2; exit 2; }
[ -f "${lock}" ] || { echo "${lock}: no such file (make lock)" >&2; exit 2; }

rm -rf "${out}"
mkdir -p "${out}"

# --only-binary with explicit platform tags: compiled wheels (pydantic-core,
# PyYAML, MarkupSafe, ...) must match the FunctionGraph runtime.
# --require-hashes: every file is the one the lock names, nothing unpinned.
"${python}" -m pip install \
  --no-cache-dir --disable-pip-version-check --quiet --no-compile \
  --target "${out}" \
  --implementation cp \
  --python-version "${python_version}" \
  --platform "manylinux_2_17_${arch}" \
  --platform "manylinux2014_${arch}" \
  --only-binary=:all: \
  --require-hashes \
  -r "${lock}"

cp "${repo}/main.py" "${out}/"
cp "${policy}" "${out}/policy.yaml"
cp -R "${repo}/failjob_reaper" "${repo}/handlers" "${out}/"
find "${out}" -name '__pycache__' -prune -exec rm -rf {} +
rm -rf "${out}/bin"   # console scripts: not used by the event function
echo "${runtime}" > "${out}/.fgs-runtime"

echo "FunctionGraph package for ${runtime} (${arch}) ready in ${out} ($(du -sh "${out}" | cut -f1))"
