// Test support: runs the real `sqlite3` command-line shell against a database file, so tests see
// writes made by another process, as applications make them.
#ifndef MARMOT_SQLITE_TESTING_SQLITE_CLI_H_
#define MARMOT_SQLITE_TESTING_SQLITE_CLI_H_

#include <string>

#include "absl/status/statusor.h"

namespace marmot::sqlite::testing {

// Feeds `sql` to `sqlite3 -bail <db_path>` on standard input, after `.timeout 10000` (as every
// application that shares a database with marmot should set a busy timeout), and returns what it
// printed on standard output. Fails when the shell exits non-zero, with its standard error.
absl::StatusOr<std::string> RunSqliteCli(const std::string& db_path, const std::string& sql);

// A fresh empty directory under TEST_TMPDIR (or /tmp), unique per call.
std::string NewTempDir(const std::string& label);

// The path of a database file in a fresh directory (NewTempDir(label)), made by the sqlite3
// shell running `sql`. A test cannot go on without it: a failing shell aborts with its error.
std::string NewDatabase(const std::string& label, const std::string& sql);

}  // namespace marmot::sqlite::testing

#endif  // MARMOT_SQLITE_TESTING_SQLITE_CLI_H_
