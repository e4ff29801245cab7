#!/usr/bin/env bash
# Fills fuzz/corpus/<target>/ with seeds: the test fixtures (zip, legacy and safetensors
# checkpoints, a wrapped one), a burnpack file and small images in several formats.
set -euo pipefail
cd "$(dirname "$0")"
fixtures=../tests/fixtures
mkdir -p corpus/load_torchvision corpus/load_burnpack corpus/load_image corpus/detect_sizes
# load_torchvision: the first byte picks the model (even: V3-Small 0.25, odd: V2 0.25).
{ printf '\000'; cat "$fixtures/training/v3s_w025.pth"; } > corpus/load_torchvision/zip_v3s
{ printf '\001'; cat "$fixtures/v2_w025_legacy.pth"; } > corpus/load_torchvision/legacy_v2
{ printf '\000'; cat "$fixtures/wrapped/float16.safetensors"; } > corpus/load_torchvision/safetensors_v3s
{ printf '\000'; cat "$fixtures/wrapped/lightning.pth"; } > corpus/load_torchvision/lightning_v3s
cp seeds/v3s_w025.bpk corpus/load_burnpack/
cp seeds/*.png seeds/*.jpg seeds/*.gif seeds/*.bmp seeds/*.webp corpus/load_image/
# detect_sizes: height and width (two bytes each), then pixel bytes (255 NaN, 254 inf).
printf '\000\017\000\017abcdef' > corpus/detect_sizes/16x16
printf '\000\000\017\377\200' > corpus/detect_sizes/1x4096
printf '\001\077\000\000\377\376\000' > corpus/detect_sizes/320x1_nonfinite
echo "seeded $(find corpus -type f | wc -l) files"
