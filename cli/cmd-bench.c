/* cmd-bench.c - `oodc bench heads|train|scorer`: dispatch to the benchmarks
 * in bench/. Each prints the machine, the mode and the command, medians of
 * repeated runs, and the PyTorch peer's figure from the same run. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

struct bench {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
};

static const struct bench benches[] = {
    {"heads", oc_bench_heads, "forward+backward of the OOD heads, fused vs unfused vs PyTorch"},
    {"train", oc_bench_train, "Wide ResNet training step and forward images/s vs PyTorch"},
    {"scorer", oc_bench_scorer, "compiled scorer latency and throughput vs PyTorch"},
    {"conv", oc_bench_conv, "WRN convolutions per layer shape: im2col + OpenBLAS vs oneDNN"},
};

int oc_cmd_bench(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        FILE *f = argc < 2 ? stderr : stdout;
        fprintf(f, "usage: oodc bench <name> [options]   (oodc bench <name> --help)\n\n");
        for (size_t i = 0; i < sizeof benches / sizeof *benches; i++)
            fprintf(f, "  %-7s %s%s\n", benches[i].name, benches[i].summary,
                    benches[i].fn ? "" : " [not built yet]");
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof benches / sizeof *benches; i++) {
        if (strcmp(argv[1], benches[i].name)) continue;
        if (!benches[i].fn)
            return oc_cli_usage_error("bench", "%s: not built yet in this version of oodc", argv[1]);
        return benches[i].fn(argc - 1, argv + 1);
    }
    return oc_cli_usage_error("bench", "unknown benchmark '%s' (heads, train, scorer)", argv[1]);
}
