// The installed headers as a C++ host includes them: they compile as C++
// (extern "C", no C-only syntax) and the library links from C++. Prints one line.
#include <agentsession.h>
#include <agentsession_lua.h>

#include <cstdio>
#include <cstring>

int main() {
    agentsession_manager *m = nullptr;
    agentsession_error err;
    agentsession_memory_options opts = AGENTSESSION_MEMORY_OPTIONS_INIT;
    agentsession_filter filter = AGENTSESSION_FILTER_INIT;
    agentsession_prune_options prune = AGENTSESSION_PRUNE_OPTIONS_INIT;
    char *meta = nullptr, *list = nullptr, *found = nullptr, *ids = nullptr;
    int64_t version = 0;
    if (agentsession_open_memory(&opts, &m, &err) != AGENTSESSION_OK
        || agentsession_save(m, "{\"metadata\":{\"id\":\"cxx\",\"name\":\"cxx\",\"agent_name\":\"c++\"}}", nullptr, &meta, &err)
               != AGENTSESSION_OK
        || agentsession_json_integer(meta, "version", &version, &err) != AGENTSESSION_OK
        || agentsession_list(m, &filter, &list, &err) != AGENTSESSION_OK
        || agentsession_search(m, "CXX", &filter, &found, &err) != AGENTSESSION_OK
        || agentsession_prune(m, &prune, &ids, &err) != AGENTSESSION_OK) {
        std::fprintf(stderr, "header_cxx: %s: %s\n", agentsession_kind(err.status), err.message);
        return 1;
    }
    std::printf("c++: version %lld, %s\n", static_cast<long long>(version),
                std::strstr(list, "\"cxx\"") && std::strstr(found, "\"cxx\"") && std::strcmp(ids, "[]") == 0
                    ? "listed" : "NOT LISTED");
    agentsession_free(meta);
    agentsession_free(list);
    agentsession_free(found);
    agentsession_free(ids);
    agentsession_manager_free(m);
    return 0;
}
