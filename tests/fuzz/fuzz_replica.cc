#include "tests/fuzz/fuzz_replica.h"

#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "glog/logging.h"
#include "replicator/change_applier.h"
#include "sqlite/change_log.h"
#include "sqlite/schema.h"

namespace marmot::fuzz {

const char FuzzReplica::kSchema[] = R"sql(
CREATE TABLE "order" (id INTEGER PRIMARY KEY, name TEXT UNIQUE, price REAL CHECK (price >= 0),
                      img BLOB);
CREATE INDEX order_price ON "order" (price);
CREATE TABLE pair (a TEXT, b INTEGER, v NOT NULL DEFAULT 'none', PRIMARY KEY (a, b)) WITHOUT ROWID;
CREATE TABLE loose (x, y);
CREATE TABLE "we""ird t" (k TEXT PRIMARY KEY NOT NULL, n INTEGER);
CREATE TABLE desc_key (id INTEGER PRIMARY KEY DESC, v);
CREATE TABLE gen (id INTEGER PRIMARY KEY, a INTEGER, b INTEGER GENERATED ALWAYS AS (a * 2) VIRTUAL);
CREATE TABLE parent (id INTEGER PRIMARY KEY);
CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent (id)
                    ON DELETE CASCADE);
CREATE TABLE seq (id INTEGER PRIMARY KEY AUTOINCREMENT, v);
CREATE TABLE audit (n INTEGER);
CREATE TRIGGER order_audit AFTER INSERT ON "order" BEGIN INSERT INTO audit VALUES (new.id); END;
CREATE VIEW cheap AS SELECT * FROM "order" WHERE price < 10;
CREATE VIRTUAL TABLE notes USING fts5(body);
)sql";

const char FuzzReplica::kRows[] = R"sql(
INSERT INTO "order" VALUES (1, 'one', 1.5, x'01'), (2, 'two', 20, NULL), (3, 'three', NULL, x''),
                           (4, 'four', 0, zeroblob(40));
INSERT INTO pair VALUES ('k', 1, 'v1'), ('k', 2, 2), ('l', 1, 3.25), (x'6b', 1, 'blob key');
INSERT INTO loose VALUES ('no', 'key'), (1.5, NULL), (NULL, NULL);
INSERT INTO "we""ird t" VALUES ('a', 1), ('b', 2), ('', NULL);
INSERT INTO desc_key VALUES (1, 'x'), (-5, 'y');
INSERT INTO gen (id, a) VALUES (1, 10), (2, NULL);
INSERT INTO parent VALUES (1), (2);
INSERT INTO child VALUES (1, 1), (2, 2), (3, NULL);
INSERT INTO seq (v) VALUES ('s1'), ('s2');
INSERT INTO notes VALUES ('full text'), ('search me');
)sql";

namespace {

std::unique_ptr<sqlite::Database> OpenOrDie(const std::string& path) {
  absl::StatusOr<sqlite::Database> db = sqlite::Database::Open(path);
  CHECK(db.ok()) << path << ": " << db.status();
  return std::make_unique<sqlite::Database>(*std::move(db));
}

void ExecOrDie(sqlite::Database& db, const std::string& sql) {
  absl::Status s = db.Exec(sql);
  CHECK(s.ok()) << s << "\n" << sql;
}

void RemoveDatabaseFiles(const std::string& path) {
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
    std::error_code ignored;
    std::filesystem::remove(path + suffix, ignored);
  }
}

}  // namespace

std::string MakeTempDir() {
  std::string base = "/tmp";
  if (const char* t = std::getenv("TEST_TMPDIR")) {
    base = t;
  } else if (const char* t = std::getenv("TMPDIR")) {
    base = t;
  } else if (std::filesystem::is_directory("/dev/shm") && ::access("/dev/shm", W_OK) == 0) {
    base = "/dev/shm";
  }
  std::string dir = base + "/marmot-fuzz-XXXXXX";
  CHECK(::mkdtemp(dir.data()) != nullptr) << "cannot make a folder under " << base;
  return dir;
}

void MakeReplicaDatabase(const std::string& path) {
  {
    std::unique_ptr<sqlite::Database> db = OpenOrDie(path);
    ExecOrDie(*db, FuzzReplica::kSchema);
    ExecOrDie(*db, FuzzReplica::kRows);
    absl::StatusOr<sqlite::CaptureReport> capture = sqlite::InstallCapture(*db);
    CHECK(capture.ok()) << capture.status();
  }
  // Capture copied the rows into the logs as pending changes; they count as replicated before.
  std::unique_ptr<sqlite::Database> db = OpenOrDie(path);
  CHECK(db->SetTriggersEnabled(false).ok());
  absl::StatusOr<std::vector<std::vector<sqlite::Value>>> logs = db->QueryRows(
      "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE '\\_\\_marmot\\_\\_%' "
      "ESCAPE '\\' AND name LIKE '%\\_change\\_log' ESCAPE '\\'");
  CHECK(logs.ok()) << logs.status();
  CHECK(!logs->empty()) << "capture made no change log";
  for (const auto& row : *logs) {
    ExecOrDie(*db, absl::StrCat("DELETE FROM ", sqlite::QuoteIdentifier(row[0].bytes())));
  }
}

FuzzReplica::FuzzReplica() {
  dir_ = MakeTempDir();
  template_path_ = dir_ + "/template.db";
  path_ = dir_ + "/replica.db";
  MakeReplicaDatabase(template_path_);
  {
    absl::StatusOr<std::unique_ptr<replicator::ChangeApplier>> applier =
        replicator::ChangeApplier::Open(template_path_, router_);
    CHECK(applier.ok()) << applier.status();
    CHECK((*applier)->AdvanceAppliedIndex(0, kAppliedIndex).ok());
    CHECK((*applier)->AdvanceAppliedIndex(1, kAppliedIndex).ok());
  }
  // Own writes not shipped yet: pending in the change logs.
  std::unique_ptr<sqlite::Database> app = OpenOrDie(template_path_);
  ExecOrDie(*app,
            "UPDATE \"order\" SET price = 2.5 WHERE id = 1;"
            "INSERT INTO pair VALUES ('m', 9, 'mine');"
            "DELETE FROM loose WHERE x = 'no';"
            "UPDATE \"we\"\"ird t\" SET k = 'c' WHERE k = 'b';");
}

FuzzReplica::~FuzzReplica() {
  Close();
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

void FuzzReplica::Close() {
  machine_.reset();
  rounds_.reset();
  writer_.reset();
  app_.reset();
  RemoveDatabaseFiles(path_);
}

void FuzzReplica::Fresh() {
  Close();
  std::filesystem::copy_file(template_path_, path_,
                             std::filesystem::copy_options::overwrite_existing);
  absl::StatusOr<std::unique_ptr<replicator::ChangeApplier>> applier =
      replicator::ChangeApplier::Open(path_, router_);
  CHECK(applier.ok()) << applier.status();
  (*applier)->set_local_node(kNode);
  writer_ = std::make_shared<replicator::DatabaseWriter>(*std::move(applier));
  rounds_ = std::make_unique<replicator::ShardApplyRounds>(writer_.get());
  machine_ = std::make_unique<replicator::ShardStateMachine>(0, writer_);
  CHECK_EQ(machine_->Open(), kAppliedIndex);
  app_ = OpenOrDie(path_);
}

uint64_t FuzzReplica::AppliedIndex(int shard) {
  uint64_t index = 0;
  absl::Status s = writer_->RunOnce([&](replicator::ChangeApplier& applier) {
    absl::StatusOr<uint64_t> applied = applier.AppliedIndex(shard);
    if (applied.ok()) index = *applied;
    return applied.status();
  });
  CHECK(s.ok()) << s;
  return index;
}

void FuzzReplica::CheckIntact() {
  absl::StatusOr<sqlite::Value> check = app_->QueryValue("PRAGMA quick_check");
  CHECK(check.ok()) << check.status();
  CHECK_EQ(check->bytes(), "ok") << "the database file is damaged";
}

std::string FuzzReplica::RowsOfShard(int shard) {
  absl::StatusOr<sqlite::SchemaListing> listing = sqlite::ListUserTables(*app_);
  CHECK(listing.ok()) << listing.status();
  std::vector<std::string> lines;
  for (const sqlite::TableSchema& t : listing->tables) {
    std::vector<std::string> key;
    if (t.keyed_by_rowid()) {
      key.push_back("rowid");
    } else {
      for (const std::string& k : t.primary_key) key.push_back(sqlite::QuoteIdentifier(k));
    }
    absl::StatusOr<std::vector<std::vector<sqlite::Value>>> rows = app_->QueryRows(absl::StrCat(
        "SELECT ", absl::StrJoin(key, ", "), ", * FROM ", sqlite::QuoteIdentifier(t.name)));
    CHECK(rows.ok()) << rows.status();
    for (const std::vector<sqlite::Value>& row : *rows) {
      const std::vector<sqlite::Value> k(row.begin(), row.begin() + key.size());
      if (router_.ShardOf(t.name, k) != shard) continue;
      std::string line = t.name;
      for (const sqlite::Value& v : row) absl::StrAppend(&line, " ", v.DebugString());
      lines.push_back(std::move(line));
    }
  }
  std::sort(lines.begin(), lines.end());
  return absl::StrJoin(lines, "\n");
}

}  // namespace marmot::fuzz
