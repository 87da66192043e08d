// The loadable SQLite extension libmarmot_ids.so: the functions `marmot_id()`, `marmot_id(N)` and
// `marmot_id_node(id)` on each connection it is loaded into (layout and guarantees in
// sqlite/marmot_ids.h).
//
//   sqlite3 shell:  .load bazel-bin/sqlite/libmarmot_ids
//   Python:         conn.enable_load_extension(True); conn.load_extension(".../libmarmot_ids")
//
// marmot_id() takes the node id from the environment variable MARMOT_NODE_ID as it was when the
// extension was loaded into the connection; marmot_id(N) takes it from its argument. Either is
// refused with an error naming the valid range (1..1023) when it is missing or out of range. The
// last tick is shared through `<main database>-marmot-id` by every connection and process that
// issues ids on that database (an in-memory or temporary database keeps it per connection).
#include <sqlite3ext.h>
#include <sys/stat.h>
#include <time.h>

#include <cerrno>
#include <cstdlib>
#include <string>

#include "sqlite/marmot_ids.h"

SQLITE_EXTENSION_INIT1

namespace {

using marmot::ids::CheckNodeId;

// What one connection keeps: its node id from the environment (or why there is none) and the
// tick file of its main database.
struct ConnectionIds {
  ConnectionIds(int64_t node, std::string node_error, std::string tick_path, int mode)
      : env_node(node), env_node_error(std::move(node_error)), ticks(std::move(tick_path), mode) {}
  const int64_t env_node;
  const std::string env_node_error;
  marmot::ids::TickFile ticks;
};

// The node id MARMOT_NODE_ID names, or 0 with `*error` saying why it names none.
int64_t NodeFromEnvironment(std::string* error) {
  const char* text = std::getenv("MARMOT_NODE_ID");
  if (text == nullptr || *text == '\0') {
    *error =
        "marmot_id(): no node id: set MARMOT_NODE_ID to this node's -node-id (1 to 1023) "
        "before loading the extension, or call marmot_id(N)";
    return 0;
  }
  char* end = nullptr;
  errno = 0;
  const long long node = std::strtoll(text, &end, 10);
  if (errno != 0 || *end != '\0' || end == text || *text == ' ' || *text == '+') {
    *error = std::string("marmot_id(): MARMOT_NODE_ID='") + text + "' is not a node id: give " +
             "this node's -node-id, 1 to 1023";
    return 0;
  }
  *error = CheckNodeId(node);
  return error->empty() ? node : 0;
}

int64_t UnixMillis() {
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  return int64_t{now.tv_sec} * 1000 + now.tv_nsec / 1000000;
}

void MarmotId(sqlite3_context* context, int argc, sqlite3_value** argv) {
  auto* ids = static_cast<ConnectionIds*>(sqlite3_user_data(context));
  int64_t node = ids->env_node;
  std::string error = ids->env_node_error;
  if (argc == 1) {
    if (sqlite3_value_numeric_type(argv[0]) != SQLITE_INTEGER) {
      sqlite3_result_error(context, "marmot_id(N): N must be an integer node id, 1 to 1023", -1);
      return;
    }
    node = sqlite3_value_int64(argv[0]);
    error = CheckNodeId(node);
  } else if (argc != 0) {
    sqlite3_result_error(context, "marmot_id() takes no argument or one: the node id", -1);
    return;
  }
  int64_t tick = 0;
  if (error.empty() && ids->ticks.Take(UnixMillis(), &tick, &error)) {
    sqlite3_result_int64(context, marmot::ids::ComposeId(tick, node));
    return;
  }
  sqlite3_result_error(context, error.c_str(), -1);
}

void MarmotIdNode(sqlite3_context* context, int, sqlite3_value** argv) {
  if (sqlite3_value_type(argv[0]) == SQLITE_NULL) return;  // NULL in, NULL out.
  if (sqlite3_value_numeric_type(argv[0]) != SQLITE_INTEGER || sqlite3_value_int64(argv[0]) < 0) {
    sqlite3_result_error(context, "marmot_id_node(id): id must be a positive integer", -1);
    return;
  }
  sqlite3_result_int64(context, marmot::ids::SplitId(sqlite3_value_int64(argv[0])).node);
}

void DeleteConnectionIds(void* ids) { delete static_cast<ConnectionIds*>(ids); }

}  // namespace

// The entry point SQLite derives from the file name libmarmot_ids.so.
extern "C" __attribute__((visibility("default"))) int sqlite3_marmotids_init(
    sqlite3* db, char** error_message, const sqlite3_api_routines* api) {
  SQLITE_EXTENSION_INIT2(api);
  std::string node_error;
  const int64_t node = NodeFromEnvironment(&node_error);
  std::string tick_path;
  int mode = 0644;
  const char* database = sqlite3_db_filename(db, "main");
  if (database != nullptr && *database != '\0') {
    tick_path = std::string(database) + "-marmot-id";
    struct stat st;
    if (stat(database, &st) == 0) mode = st.st_mode & 0666;  // As SQLite does for -wal.
  }
  auto* ids = new ConnectionIds(node, std::move(node_error), std::move(tick_path), mode);
  // Not deterministic (each call differs) but innocuous: usable in a DEFAULT clause or a trigger
  // even with trusted_schema off. One registration owns `ids` and frees it with the connection.
  int rc = sqlite3_create_function_v2(db, "marmot_id", -1, SQLITE_UTF8 | SQLITE_INNOCUOUS, ids,
                                      MarmotId, nullptr, nullptr, DeleteConnectionIds);
  if (rc == SQLITE_OK) {
    rc = sqlite3_create_function_v2(db, "marmot_id_node", 1,
                                    SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS, nullptr,
                                    MarmotIdNode, nullptr, nullptr, nullptr);
  }
  if (rc != SQLITE_OK && error_message != nullptr) {
    *error_message =
        sqlite3_mprintf("libmarmot_ids: cannot register its functions: %s", sqlite3_errstr(rc));
  }
  return rc;
}
