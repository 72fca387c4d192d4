/* main.c - `simile <command>`: dispatch to the subcommands. */
#include "cli.h"
#include <string.h>

static const struct { const char *name; int (*fn)(int, char **); const char *help; } commands[] = {
    {"train", cmd_train, "train a model (softmax cross-entropy or a metric loss)"},
    {"eval", cmd_eval, "evaluate a model: accuracy and confusion matrix, or retrieval metrics"},
    {"info", cmd_info, "show a model file's layers, loss and parameter count"},
    {"losses", cmd_losses, "list the losses and their options"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: simile <command> [options]   (simile <command> --help for details)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\nexit codes: 0 success, 1 failure, 2 usage error, 3 bad or unreadable input file,\n"
               "            4 numerical failure (NaN/Inf)\n");
}

int main(int argc, char **argv) {
    if (argc < 2) { usage(stderr); return EXIT_USAGE; }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) { usage(stdout); return EXIT_OK; }
    if (!strcmp(argv[1], "--version")) { printf("simile %s\n", sm_version()); return EXIT_OK; }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "simile: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return EXIT_USAGE;
}
