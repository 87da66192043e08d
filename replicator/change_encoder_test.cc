// The encoder's bytes are exactly what protobuf serializes for the messages change_batch.h
// builds, for every kind of change and value, read from real change logs.
#include "replicator/change_encoder.h"

#include <gtest/gtest.h>

#include "proto/change.pb.h"
#include "replicator/change_batch.h"
#include "sqlite/change_log.h"
#include "sqlite/database.h"
#include "sqlite/testing/sqlite_cli.h"

namespace marmot::replicator {
namespace {

struct Captured {
  sqlite::TableSchema table;
  std::vector<sqlite::ChangeRecord> records;
};

std::vector<Captured> CaptureEveryKindOfChange() {
  const std::string path = sqlite::testing::NewDatabase(
      "change-encoder",
      "CREATE TABLE t (id INTEGER PRIMARY KEY, v, w TEXT);"
      "CREATE TABLE pair (a TEXT, b INTEGER, v, PRIMARY KEY (a, b)) WITHOUT ROWID;"
      "CREATE TABLE loose (x, y);");
  auto db = sqlite::Database::Open(path);
  EXPECT_TRUE(db.ok());
  EXPECT_TRUE(sqlite::InstallCapture(*db).ok());
  EXPECT_TRUE(sqlite::testing::RunSqliteCli(
                  path,
                  "INSERT INTO t VALUES (1, NULL, ''), (-9223372036854775808, 0, 'ünïcode'),"
                  "  (9223372036854775807, -1.5e300, x'00ff'), (0, x'', 'z');"
                  "UPDATE t SET v = 3.25 WHERE id = 1;"
                  "UPDATE t SET id = 2 WHERE id = 1;"
                  "DELETE FROM t WHERE id = 0;"
                  "INSERT INTO pair VALUES ('k', 1, 'a'), ('', -5, NULL);"
                  "UPDATE pair SET b = 2 WHERE a = 'k';"
                  "DELETE FROM pair WHERE a = '';"
                  "INSERT INTO loose VALUES (1, 2), ('x', NULL);"
                  "UPDATE loose SET rowid = 10 WHERE x = 1;"
                  "DELETE FROM loose WHERE y IS NULL;")
                  .ok());
  std::vector<Captured> out;
  auto listing = sqlite::ListUserTables(*db);
  EXPECT_TRUE(listing.ok());
  for (const sqlite::TableSchema& t : listing->tables) {
    auto records = sqlite::ReadChanges(*db, t, 0, 1000);
    EXPECT_TRUE(records.ok()) << records.status();
    out.push_back({t, *records});
  }
  return out;
}

TEST(ChangeEncoderTest, EveryChangeSerializesAsItsMessage) {
  int rekeys = 0, deletes = 0, total = 0;
  for (const Captured& c : CaptureEveryKindOfChange()) {
    for (const sqlite::ChangeRecord& r : c.records) {
      ++total;
      const change::v1::Change whole = ToWire(c.table, r);
      std::string bytes;
      AppendChange(c.table, r, ChangePart::kWhole, &bytes);
      EXPECT_EQ(bytes, whole.SerializeAsString()) << c.table.name << " change " << r.id;

      // The two halves of a split rekey, as the shipper built them from messages.
      change::v1::Change del;
      del.set_change_id(r.id);
      del.set_at_ms(r.at_ms);
      del.set_op(change::v1::OP_DELETE);
      *del.mutable_old_key() = whole.old_key();
      bytes.clear();
      AppendChange(c.table, r, ChangePart::kOldKeyDelete, &bytes);
      EXPECT_EQ(bytes, del.SerializeAsString()) << c.table.name << " change " << r.id;
      change::v1::Change ins = whole;
      ins.set_op(change::v1::OP_INSERT);
      ins.clear_old_key();
      ins.clear_prev();  // A half of a split rekey names no version (nor does a rekey).
      bytes.clear();
      AppendChange(c.table, r, ChangePart::kNewRowInsert, &bytes);
      EXPECT_EQ(bytes, ins.SerializeAsString()) << c.table.name << " change " << r.id;
      rekeys += r.op == sqlite::ChangeOp::kRekey;
      deletes += r.op == sqlite::ChangeOp::kDelete;
    }
  }
  // Read after every statement ran: the changes of rows gone since read as deletes.
  EXPECT_EQ(total, 15);
  EXPECT_EQ(rekeys, 3);
  EXPECT_EQ(deletes, 10);
}

TEST(ChangeEncoderTest, ABatchSerializesAsItsMessageWithTablesInOrderOfFirstChange) {
  const std::vector<Captured> captured = CaptureEveryKindOfChange();
  ChangeBatchWriter writer(7);
  change::v1::ChangeBatch expected;
  expected.set_origin_node(7);
  std::vector<std::string> headers;
  headers.reserve(captured.size());
  for (const Captured& c : captured) headers.push_back(TableHeader(c.table).SerializeAsString());
  // Interleaved: a change of each table in turn; the batch groups them per table.
  for (size_t i = 0; i < 6; ++i) {
    for (size_t t = 0; t < captured.size(); ++t) {
      if (i >= captured[t].records.size()) continue;
      std::string bytes;
      AppendChange(captured[t].table, captured[t].records[i], ChangePart::kWhole, &bytes);
      writer.Add(&headers[t], bytes);
      if (i == 0) *expected.add_tables() = TableHeader(captured[t].table);
      *expected.mutable_tables(static_cast<int>(t))->add_changes() =
          ToWire(captured[t].table, captured[t].records[i]);
    }
  }
  const std::string bytes = writer.Finish();
  EXPECT_EQ(bytes, expected.SerializeAsString());
  change::v1::ChangeBatch parsed;
  ASSERT_TRUE(parsed.ParseFromString(bytes));
  EXPECT_EQ(parsed.tables_size(), 3);
}

}  // namespace
}  // namespace marmot::replicator
