/*
** Replays a fuzz target without libFuzzer: calls LLVMFuzzerTestOneInput once
** for every file named on the command line and every file in the directories
** named there (in name order; names starting with '.' are skipped, so a
** directory can hold a .gitkeep). Each input is read into a buffer of exactly
** its size, so a sanitizer or valgrind sees any read past its end.
**
** Prints "replay <target>: N inputs" (the target is this program's name) and
** exits 0, or exits 1 when a file cannot be read. A failed input aborts inside
** the target, as it does under libFuzzer.
*/
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t inputs;

static int run_file(const char *path) {
    FILE *f = fopen(path, "rb");
    uint8_t *data;
    long size;
    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0
        || fseek(f, 0, SEEK_SET) != 0) {
        fprintf(stderr, "replay: cannot read %s: %s\n", path, strerror(errno));
        if (f) fclose(f);
        return -1;
    }
    data = malloc(size > 0 ? (size_t)size : 1);
    if (data == NULL || (size > 0 && fread(data, 1, (size_t)size, f) != (size_t)size)) {
        fprintf(stderr, "replay: cannot read %s\n", path);
        free(data);
        fclose(f);
        return -1;
    }
    fclose(f);
    LLVMFuzzerTestOneInput(data, (size_t)size);
    free(data);
    inputs++;
    return 0;
}

static int skip_dots(const struct dirent *e) {
    return e->d_name[0] != '.';
}

static int run_path(const char *path) {
    struct stat sb;
    struct dirent **names;
    int n, i, status = 0;
    if (stat(path, &sb) != 0) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(sb.st_mode)) return run_file(path);
    if ((n = scandir(path, &names, skip_dots, alphasort)) < 0) {
        fprintf(stderr, "replay: cannot list %s: %s\n", path, strerror(errno));
        return -1;
    }
    for (i = 0; i < n; i++) {
        size_t len = strlen(path) + strlen(names[i]->d_name) + 2;
        char *full = malloc(len);
        if (full == NULL) status = -1;
        else {
            snprintf(full, len, "%s/%s", path, names[i]->d_name);
            if (run_path(full) != 0) status = -1;
            free(full);
        }
        free(names[i]);
    }
    free(names);
    return status;
}

int main(int argc, char **argv) {
    const char *name = strrchr(argv[0], '/');
    int i, status = 0;
    name = name ? name + 1 : argv[0];
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE_OR_DIRECTORY...\n", name);
        return 2;
    }
    for (i = 1; i < argc; i++)
        if (run_path(argv[i]) != 0) status = 1;
    printf("replay %s: %zu inputs\n", name, inputs);
    return status;
}
