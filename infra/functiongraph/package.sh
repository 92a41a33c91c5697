#!/usr/bin/env bash
# Build the FunctionGraph code package for Terraform: build/package/ holds
# main.py, failjob_reaper/, handlers/, the pinned runtime dependencies,
# downloaded as wheels for the FunctionGraph runtime (not for this machine),
# and policy.yaml (POLICY_FILE, default infra/knative/policy.yaml). Terraform
# then zips the directory while it plans.
#
#   infra/functiongraph/package.sh              # Python 3.12, x86_64
#   POLICY_FILE=my-policy.yaml infra/functiongraph/package.sh
#   FGS_PYTHON_VERSION=3.12 FGS_ARCH=aarch64 infra/functiongraph/package.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "${here}/../.." && pwd)"
python_version="${FGS_PYTHON_VERSION:-3.12}"
arch="${FGS_ARCH:-x86_64}"
out="${here}/build/package"
python="${PYTHON:-python3}"
policy="${POLICY_FILE:-${repo}/infra/knative/policy.yaml}"
[ -f "${policy}" ] || { echo "POLICY_FILE ${policy}: no such file" >&2; exit 2; }

rm -rf "${out}"
mkdir -p "${out}"

# --only-binary with explicit platform tags: compiled wheels (pydantic-core,
# PyYAML, MarkupSafe, ...) must match the FunctionGraph runtime.
"${python}" -m pip install \
  --no-cache-dir --disable-pip-version-check --quiet --no-compile \
  --target "${out}" \
  --implementation cp \
  --python-version "${python_version}" \
  --platform "manylinux_2_17_${arch}" \
  --platform "manylinux2014_${arch}" \
  --only-binary=:all: \
  -r "${repo}/requirements.txt"

cp "${repo}/main.py" "${out}/"
cp "${policy}" "${out}/policy.yaml"
cp -R "${repo}/failjob_reaper" "${repo}/handlers" "${out}/"
find "${out}" -name '__pycache__' -prune -exec rm -rf {} +
rm -rf "${out}/bin"   # console scripts: not used by the event function

echo "FunctionGraph package ready in ${out} ($(du -sh "${out}" | cut -f1))"
