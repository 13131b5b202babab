/*
** A game keeps an NPC's dialogue with agentsession: each turn of the game loop
** appends the player's line and the NPC's answer; when the player comes back,
** the NPC recalls only her last few lines; a branch of the story is a fork.
**
**   cc -o npc npc.c $(pkg-config --cflags --libs agentsession)
**   ./npc dialogue.db
**
** Every call's status is checked: an unexpected error ends the program with
** the library's message, as a game would log it.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <agentsession.h>

#define BRENNA "npc-brenna"

static const char *const dialogue[][2] = {
    { "Good morning! Is the forge hot?", "Hot enough to bend iron. What do you need?" },
    { "A sword for the road north.", "The north road... wolves there. Twelve gold." },
    { "Deal. Here is the gold.", "Come back at dusk, it will be ready." },
    { "Is it dusk yet?", "Not yet. Patience is a smith's first tool." },
    { "Now it is dusk.", "Here is your sword. Mind the wolves." },
};

static agentsession_error err;

/* Ends the program when a call failed. */
static void check(agentsession_status st, const char *what) {
    if (st == AGENTSESSION_OK) return;
    fprintf(stderr, "npc: %s: agentsession: %s: %s\n", what, agentsession_kind(st), err.message);
    exit(1);
}

static int64_t integer(const char *json, const char *path) {
    int64_t v;
    check(agentsession_json_integer(json, path, &v, &err), path);
    return v;
}

/* A string of the result, printed. */
static void print_string(const char *json, const char *path) {
    char *s;
    check(agentsession_json_string(json, path, &s, &err), path);
    fputs(s, stdout);
    agentsession_free(s);
}

/* Appends text to out as a JSON string, cut to fit (quotes and backslashes
** escaped; the lines here are plain ASCII). */
static void put_json_string(char *out, size_t size, const char *text) {
    size_t n = strlen(out);
    if (n + 3 > size) return;
    out[n++] = '"';
    for (; *text && n + 4 <= size; text++) {
        if (*text == '"' || *text == '\\') out[n++] = '\\';
        out[n++] = *text;
    }
    out[n++] = '"';
    out[n] = '\0';
}

/* [{"speaker":"player","text":…},{"speaker":"npc","text":…}] */
static void exchange_json(char *out, size_t size, const char *player, const char *npc) {
    snprintf(out, size, "[{\"speaker\":\"player\",\"text\":");
    put_json_string(out, size, player);
    strncat(out, "},{\"speaker\":\"npc\",\"text\":", size - strlen(out) - 1);
    put_json_string(out, size, npc);
    strncat(out, "}]", size - strlen(out) - 1);
}

/* Appends one exchange; returns the new metadata. */
static char *talk(agentsession_manager *m, const char *id, const char *player, const char *npc,
                  const char *state_json) {
    agentsession_append_options opts = AGENTSESSION_APPEND_OPTIONS_INIT;
    char lines[512], *meta;
    exchange_json(lines, sizeof lines, player, npc);
    opts.tokens = (strlen(player) + strlen(npc)) / 4; /* the game's own estimate */
    opts.state_json = state_json;
    check(agentsession_append(m, id, lines, &opts, &meta, &err), "append");
    return meta;
}

/* Prints the lines of a window, numbered as they are stored. */
static void print_window(const char *window) {
    int64_t first = integer(window, "window.first"), count = integer(window, "window.count");
    int64_t i;
    printf("Brenna recalls lines %lld-%lld of %lld:\n", (long long)first, (long long)(first + count - 1),
           (long long)integer(window, "window.total"));
    for (i = 1; i <= count; i++) {
        char path[64];
        printf("  %2lld ", (long long)(first + i - 1));
        snprintf(path, sizeof path, "messages[%lld].speaker", (long long)i);
        print_string(window, path);
        fputs(": ", stdout);
        snprintf(path, sizeof path, "messages[%lld].text", (long long)i);
        print_string(window, path);
        putchar('\n');
    }
}

int main(int argc, char **argv) {
    static const char *const village[] = { "village" };
    agentsession_filter filter = AGENTSESSION_FILTER_INIT;
    agentsession_manager *m;
    char *meta, *window, *branch, *branch_id, *list;
    agentsession_status st;
    size_t i, n;

    if (argc != 2) {
        fprintf(stderr, "usage: npc STORE.db\n");
        return 2;
    }
    check(agentsession_open_sqlite(argv[1], NULL, &m, &err), "open");

    /* A new game: Brenna's session of an earlier game goes, a new one starts. */
    st = agentsession_delete(m, BRENNA, &err);
    if (st != AGENTSESSION_ERR_NOT_FOUND) check(st, "delete");
    check(agentsession_save(m, "{\"metadata\":{\"id\":\"" BRENNA "\",\"name\":\"Brenna the smith\","
                               "\"agent_name\":\"npc\",\"tags\":[\"village\",\"smith\"]},"
                               "\"messages\":[],\"state\":{\"mood\":\"wary\",\"gold\":0}}",
                            NULL, &meta, &err), "save");
    printf("new game: Brenna saved, %lld lines\n", (long long)integer(meta, "turn_count"));
    agentsession_free(meta);

    /* The game loop: one exchange a turn, her mood kept in the same write. */
    for (i = 0; i < sizeof dialogue / sizeof *dialogue; i++) {
        const char *state = i == 2 ? "{\"mood\":\"friendly\",\"gold\":12}" : NULL;
        printf("turn %zu  player: %s\n        Brenna: %s\n", i + 1, dialogue[i][0], dialogue[i][1]);
        meta = talk(m, BRENNA, dialogue[i][0], dialogue[i][1], state);
        if (i + 1 == sizeof dialogue / sizeof *dialogue)
            printf("Brenna has %lld lines, %lld tokens, version %lld\n", (long long)integer(meta, "turn_count"),
                   (long long)integer(meta, "total_tokens"), (long long)integer(meta, "version"));
        agentsession_free(meta);
    }

    /* The player comes back: the last four lines are all the NPC reads. */
    check(agentsession_resume_last(m, BRENNA, 4, &window, &err), "resume_last");
    print_window(window);
    printf("her mood: ");
    print_string(window, "state.mood");
    putchar('\n');

    /* The quest log saves the window it read; a line said since makes it stale. */
    meta = talk(m, BRENNA, "Thank you, Brenna.", "Safe travels.", NULL);
    agentsession_free(meta);
    if (agentsession_save(m, window, NULL, NULL, &err) != AGENTSESSION_ERR_CONFLICT) {
        fprintf(stderr, "npc: a stale window was saved\n");
        return 1;
    }
    printf("quest log: %s (reloading)\n", agentsession_kind(err.status));
    agentsession_free(window);
    check(agentsession_resume_last(m, BRENNA, 4, &window, &err), "resume_last");
    check(agentsession_save(m, window, NULL, &meta, &err), "save window");
    printf("quest log: window saved, Brenna still has %lld lines\n", (long long)integer(meta, "turn_count"));
    agentsession_free(meta);
    agentsession_free(window);

    /* A branch: what if the player had haggled after the price? */
    check(agentsession_fork_at(m, BRENNA, "Brenna (haggled)", 4, &branch, &err), "fork");
    check(agentsession_json_string(branch, "id", &branch_id, &err), "id");
    agentsession_free(branch);
    meta = talk(m, branch_id, "Twelve gold? Ten, and not a coin more.", "Then go north with a stick.",
                "{\"mood\":\"offended\",\"gold\":0}");
    printf("branch: %lld lines, forked from ", (long long)integer(meta, "turn_count"));
    print_string(meta, "parent_id");
    putchar('\n');
    agentsession_free(meta);

    /* Who is in the village? */
    filter.tags = village;
    filter.ntags = 1;
    check(agentsession_list(m, &filter, &list, &err), "list");
    check(agentsession_json_length(list, "", &n, &err), "list");
    printf("in the village:\n");
    for (i = 1; i <= n; i++) {
        char path[32];
        snprintf(path, sizeof path, "[%zu].name", i);
        fputs("  ", stdout);
        print_string(list, path);
        snprintf(path, sizeof path, "[%zu].turn_count", i);
        printf(", %lld lines\n", (long long)integer(list, path));
    }
    agentsession_free(list);

    /* An NPC the game never met. */
    if (agentsession_resume(m, "npc-nobody", &window, &err) != AGENTSESSION_ERR_NOT_FOUND) {
        fprintf(stderr, "npc: a session that was never saved was found\n");
        return 1;
    }
    printf("agentsession: %s: %s\n", agentsession_kind(err.status), err.message);

    /* The branch is dropped, the game closes its store. */
    check(agentsession_delete(m, branch_id, &err), "delete");
    agentsession_free(branch_id);
    agentsession_manager_free(m);
    printf("saved and closed\n");
    return 0;
}
