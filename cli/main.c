/* main.c - `simile <command>`: dispatch to the subcommands. */
#include "cli.h"
#include "cli_gallery.h"
#include "serve.h"
#include <stdlib.h>
#include <string.h>

static const struct { const char *name; int (*fn)(int, char **); const char *help; } commands[] = {
    {"train", cmd_train, "train a model (softmax cross-entropy or a metric loss)"},
    {"eval", cmd_eval, "evaluate a model: accuracy and confusion matrix, or retrieval metrics"},
    {"info", cmd_info, "show a model file's layers, loss and parameter count"},
    {"losses", cmd_losses, "list the losses and their options"},
    {"compare", cmd_compare, "softmax versus metric learning: train, evaluate, write an HTML report"},
    {"embed", cmd_embed, "embed images (IDX, folder, files) into a .npy file of embeddings"},
    {"gallery", cmd_gallery, "manage a gallery: create, enrol, remove, list, compact, calibrate"},
    {"identify", cmd_identify, "identify queries against a gallery, with open-set rejection"},
    {"verify", cmd_verify, "same or different: two images, or an image and an enrolled class"},
    {"classify", cmd_classify, "top-k classes with probabilities from a softmax model"},
    {"import", cmd_import, "build a model from an ONNX file (PyTorch's torch.onnx.export, docs/interop.md)"},
    {"export", cmd_export, "write a model's embedding network as an ONNX file"},
    {"cut", cmd_cut, "keep a model's layers up to one (its trunk, without the projection head)"},
    {"serve", cmd_serve, "an HTTP/JSON API over a gallery: enrol, identify, verify (docs/serve.md)"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: simile <command> [options]   (simile <command> --help, or simile help <command>, for details)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\nexit codes: 0 success, 1 failure, 2 usage error, 3 bad or unreadable input file,\n"
               "            4 numerical failure (NaN/Inf)\n");
}

int main(int argc, char **argv) {
    if (argc < 2) { usage(stderr); return EXIT_USAGE; }
    if (!strcmp(argv[1], "help") && argc >= 3 && argc < 16) {
        /* simile help CMD [SUB]: run CMD [SUB] --help */
        static char *hargv[16], help_opt[] = "--help";
        int n = 0;
        hargv[n++] = argv[0];
        for (int i = 2; i < argc; i++) hargv[n++] = argv[i];
        hargv[n++] = help_opt;
        hargv[n] = NULL;
        argc = n;
        argv = hargv;
    } else if (cli_is_help(argv[1]) || !strcmp(argv[1], "help")) {
        usage(stdout);
        return EXIT_OK;
    }
    /* SIMILE_ISA forces the path of the matrix products; a bad value is a usage error here
     * (the library alone ignores it and says so in sm_compute_info.warning) */
    const char *isa = getenv("SIMILE_ISA");
    if (isa && *isa && sm_set_isa(isa) != SM_OK) {
        fprintf(stderr, "simile: SIMILE_ISA=%s: %s\n", isa, sm_errmsg());
        return EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--version")) {
        sm_compute_info ci;
        sm_compute_info_get(&ci);
        printf("simile %s\ncpu     %s (family %d model %d)\nvector  %s: %s\nblas    %s\nkernel  %s\nthreads %d\n",
               sm_version(), ci.cpu, ci.cpu_family, ci.cpu_model, ci.vector_isa, ci.cpu_flags, ci.blas,
               ci.blas_core, ci.threads);
        if (ci.warning[0]) printf("warning %s\n", ci.warning);
        return EXIT_OK;
    }
    cli_set_json(0);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "simile: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return EXIT_USAGE;
}
