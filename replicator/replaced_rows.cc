#include "replicator/replaced_rows.h"

#include <cstring>

namespace marmot::replicator {

namespace {

sqlite::Value ToValue(sqlite3_value* v) {
  switch (sqlite3_value_type(v)) {
    case SQLITE_INTEGER:
      return sqlite::Value::Integer(sqlite3_value_int64(v));
    case SQLITE_FLOAT:
      return sqlite::Value::Real(sqlite3_value_double(v));
    case SQLITE_TEXT: {
      const unsigned char* text = sqlite3_value_text(v);
      return sqlite::Value::Text(
          std::string(reinterpret_cast<const char*>(text), sqlite3_value_bytes(v)));
    }
    case SQLITE_BLOB: {
      const void* blob = sqlite3_value_blob(v);
      const int bytes = sqlite3_value_bytes(v);
      return sqlite::Value::Blob(bytes == 0 ? std::string()
                                            : std::string(static_cast<const char*>(blob), bytes));
    }
    default:
      return sqlite::Value::Null();
  }
}

}  // namespace

ReplacedRowsRecorder::ReplacedRowsRecorder(sqlite::Database& db, std::string table,
                                           std::vector<int> key_columns)
    : db_(db), table_(std::move(table)), key_columns_(std::move(key_columns)) {
  sqlite3_preupdate_hook(db_.raw(), &ReplacedRowsRecorder::OnChange, this);
}

ReplacedRowsRecorder::~ReplacedRowsRecorder() {
  sqlite3_preupdate_hook(db_.raw(), nullptr, nullptr);
}

void ReplacedRowsRecorder::OnChange(void* self, sqlite3* db, int op, const char* schema,
                                    const char* table, sqlite3_int64 old_rowid, sqlite3_int64) {
  auto* recorder = static_cast<ReplacedRowsRecorder*>(self);
  if (op != SQLITE_DELETE || std::strcmp(schema, "main") != 0 || recorder->table_ != table) {
    return;
  }
  std::vector<sqlite::Value> identity;
  if (recorder->key_columns_.empty()) identity.push_back(sqlite::Value::Integer(old_rowid));
  for (int i : recorder->key_columns_) {
    sqlite3_value* v = nullptr;
    identity.push_back(sqlite3_preupdate_old(db, i, &v) == SQLITE_OK && v != nullptr
                           ? ToValue(v)
                           : sqlite::Value::Null());
  }
  recorder->rows_.push_back(std::move(identity));
}

}  // namespace marmot::replicator
