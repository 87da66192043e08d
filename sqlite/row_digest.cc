#include "sqlite/row_digest.h"

#include <sqlite3.h>
#include <xxhash.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace marmot::sqlite {

namespace {

void AppendU32(uint32_t n, std::string& out) {
  for (int i = 0; i < 4; ++i) out += static_cast<char>((n >> (8 * i)) & 0xff);
}

void AppendU64(uint64_t n, std::string& out) {
  for (int i = 0; i < 8; ++i) out += static_cast<char>((n >> (8 * i)) & 0xff);
}

void AppendValue(const Value& v, std::string& out) {
  out += static_cast<char>(v.storage_class());
  switch (v.storage_class()) {
    case StorageClass::kNull:
      return;
    case StorageClass::kInteger:
      AppendU64(static_cast<uint64_t>(v.integer()), out);
      return;
    case StorageClass::kReal: {
      const double d = v.real();
      uint64_t bits;
      std::memcpy(&bits, &d, sizeof bits);
      AppendU64(bits, out);
      return;
    }
    case StorageClass::kText:
    case StorageClass::kBlob:
      AppendU32(static_cast<uint32_t>(v.bytes().size()), out);
      out += v.bytes();
      return;
  }
}

Value FromSqlite(sqlite3_value* v) {
  switch (sqlite3_value_type(v)) {
    case SQLITE_INTEGER:
      return Value::Integer(sqlite3_value_int64(v));
    case SQLITE_FLOAT:
      return Value::Real(sqlite3_value_double(v));
    case SQLITE_TEXT: {
      const auto* text = reinterpret_cast<const char*>(sqlite3_value_text(v));
      return Value::Text(std::string(text, static_cast<size_t>(sqlite3_value_bytes(v))));
    }
    case SQLITE_BLOB: {
      const auto* blob = static_cast<const char*>(sqlite3_value_blob(v));
      const int n = sqlite3_value_bytes(v);
      return Value::Blob(n == 0 ? std::string() : std::string(blob, static_cast<size_t>(n)));
    }
    default:
      return Value::Null();
  }
}

void RowDigestFunction(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
  if (argc % 2 != 0) {
    sqlite3_result_error(ctx, "marmot_row_digest takes (name, value) pairs", -1);
    return;
  }
  std::vector<std::string> names;
  std::vector<Value> values;
  for (int i = 0; i < argc; i += 2) {
    const auto* name = reinterpret_cast<const char*>(sqlite3_value_text(argv[i]));
    names.emplace_back(name == nullptr ? "" : name,
                       static_cast<size_t>(sqlite3_value_bytes(argv[i])));
    values.push_back(FromSqlite(argv[i + 1]));
  }
  sqlite3_result_int64(ctx, RowDigest(names, values));
}

}  // namespace

RowDigester::RowDigester(const std::vector<std::string>& columns) {
  std::vector<std::string> lower;
  for (const std::string& c : columns) lower.push_back(absl::AsciiStrToLower(c));
  order_.resize(columns.size());
  for (size_t i = 0; i < order_.size(); ++i) order_[i] = i;
  std::stable_sort(order_.begin(), order_.end(),
                   [&](size_t a, size_t b) { return lower[a] < lower[b]; });
  for (size_t i : order_) {
    std::string& name = names_.emplace_back();
    AppendU32(static_cast<uint32_t>(lower[i].size()), name);
    name += lower[i];
  }
}

int64_t RowDigester::Of(absl::FunctionRef<Value(size_t)> value) const {
  std::string encoded;
  for (size_t k = 0; k < order_.size(); ++k) {
    encoded += names_[k];
    AppendValue(value(order_[k]), encoded);
  }
  const int64_t digest = static_cast<int64_t>(XXH64(encoded.data(), encoded.size(), 0));
  return digest == kNoRowDigest ? 1 : digest;
}

int64_t RowDigest(const std::vector<std::string>& columns, const std::vector<Value>& values) {
  return RowDigester(columns).Of([&](size_t i) { return i < values.size() ? values[i] : Value(); });
}

absl::Status RegisterRowDigest(Database& db) {
  const int rc = sqlite3_create_function_v2(db.raw(), "marmot_row_digest", -1,
                                            SQLITE_UTF8 | SQLITE_DETERMINISTIC, nullptr,
                                            RowDigestFunction, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) {
    return absl::InternalError(absl::StrCat("registering marmot_row_digest: ", sqlite3_errstr(rc)));
  }
  return absl::OkStatus();
}

}  // namespace marmot::sqlite
