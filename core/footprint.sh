#!/usr/bin/env bash
# Flash and RAM of microsocket-core on a Cortex-M4F (thumbv7em-none-eabihf),
# from link-only images (core/footprint/): a client and a server connection,
# each in the default and two small configurations, and for comparison a
# client doing the same work with minimq 0.13 (an MQTT 5 client), built with
# opt-level "z", LTO and one codegen unit. Prints a Markdown table, then the
# ratio of minimq's flash to the default client's:
#
#     bash core/footprint.sh
#
# flash = .text + .rodata + .vector_table; RAM = .data + .bss, the machine
# included (it lives in a plain static; the script fails if any of it lands
# in .data, which would cost its whole size in flash too). "mem*" is the part of the flash that is the
# compiler's memcpy/memmove/memset builtins, and the vector table is
# cortex-m-rt's: any firmware links both anyway, so "microsocket's flash" is
# what is left (for minimq_client: minimq's, with the crates it pulls in and
# the image's transport, time driver and executor).
set -euo pipefail
cd "$(dirname "$0")/footprint"

rustup target add thumbv7em-none-eabihf >/dev/null 2>&1
rustup component add llvm-tools >/dev/null 2>&1
bin="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin"
cargo build --release --quiet

section() { # image section -> bytes
    "$bin/llvm-size" -A "$1" | awk -v s="$2" '$1 == s { print $2 }' | head -1
}
echo "| image | machine | flash (bytes) | of which mem* | of which the vector table | microsocket's flash | RAM (bytes) |"
echo "|---|---|---:|---:|---:|---:|---:|"
for image in client client_small client_tiny server server_small server_tiny minimq_client; do
    elf="target/thumbv7em-none-eabihf/release/$image"
    text=$(section "$elf" .text); rodata=$(section "$elf" .rodata); vectors=$(section "$elf" .vector_table)
    data=$(section "$elf" .data); bss=$(section "$elf" .bss)
    flash=$(( ${text:-0} + ${rodata:-0} + ${vectors:-0} ))
    ram=$(( ${data:-0} + ${bss:-0} ))
    mem=0
    while read -r _ size _ name; do
        case "$name" in
            __aeabi_mem* | memcpy | memmove | memset | memcmp | *compiler_builtins*mem*) mem=$((mem + 16#$size)) ;;
        esac
    done < <("$bin/llvm-nm" --print-size --size-sort --demangle "$elf")
    machine=\`$(sed -n 's/^type Machine = \(.*\);/\1/p' "src/bin/$image.rs")\`
    if [[ $image == minimq_client ]]; then # its buffers are not in the type
        rx=$(sed -n 's/^const RX: usize = \(.*\);/\1/p' "src/bin/$image.rs")
        tx=$(sed -n 's/^const TX: usize = \(.*\);/\1/p' "src/bin/$image.rs")
        machine="minimq 0.13 $machine, RX $rx + TX $tx bytes"
    fi
    if (( ${data:-0} > 0 )); then
        echo "$image: $data bytes of .data: a machine in a static must start as zero bytes (.bss)" >&2
        exit 1
    fi
    own=$((flash - mem - ${vectors:-0}))
    echo "| $image | $machine | $flash | $mem | ${vectors:-0} | $own | $ram |"
    case $image in
        client) client_flash=$flash client_own=$own ;;
        minimq_client) minimq_flash=$flash minimq_own=$own ;;
    esac
done
echo
awk -v f="$minimq_flash" -v cf="$client_flash" -v o="$minimq_own" -v co="$client_own" 'BEGIN {
    printf "minimq_client / client: %.2fx of flash, %.2fx without mem* and the vector table\n", f / cf, o / co
}'
