// A SQLite value with its storage class kept exactly.
//
// SQLite stores every value as one of five storage classes. Replication must reproduce them
// bit for bit on every node: a REAL stays REAL even when it holds a whole number, the TEXT
// '2024-01-01' never becomes a number or a date, a BLOB may hold zero bytes, and NULL is a value
// of its own. `Value` is that five-way union; `Statement` binds and reads it without conversion.
#ifndef MARMOT_SQLITE_VALUE_H_
#define MARMOT_SQLITE_VALUE_H_

#include <cstdint>
#include <string>
#include <variant>

#include "absl/strings/string_view.h"

namespace marmot::sqlite {

enum class StorageClass { kNull = 0, kInteger = 1, kReal = 2, kText = 3, kBlob = 4 };

// "NULL", "INTEGER", "REAL", "TEXT" or "BLOB".
absl::string_view StorageClassName(StorageClass c);

class Value {
 public:
  // NULL.
  Value() = default;

  static Value Null() { return Value(); }
  static Value Integer(int64_t v) { return Value(Rep(std::in_place_index<1>, v)); }
  static Value Real(double v) { return Value(Rep(std::in_place_index<2>, v)); }
  static Value Text(std::string v) { return Value(Rep(std::in_place_index<3>, std::move(v))); }
  // Bytes are taken as they are, zero bytes included.
  static Value Blob(std::string bytes) {
    return Value(Rep(std::in_place_index<4>, std::move(bytes)));
  }

  StorageClass storage_class() const { return static_cast<StorageClass>(rep_.index()); }
  bool is_null() const { return rep_.index() == 0; }

  // Each accessor requires the matching storage class (CHECK-fails otherwise).
  int64_t integer() const;
  double real() const;
  // TEXT as UTF-8, or BLOB bytes.
  const std::string& bytes() const;

  // Equal when the storage class and the exact content match. REAL compares bit patterns so that
  // NaN payloads and -0.0 round-trip checks are exact.
  friend bool operator==(const Value& a, const Value& b);
  friend bool operator!=(const Value& a, const Value& b) { return !(a == b); }

  // A SQL-literal-like rendering for logs and test failures: NULL, 42, 1.5e0, 'text', X'00ff'.
  std::string DebugString() const;

 private:
  using Rep = std::variant<std::monostate, int64_t, double, std::string, std::string>;
  explicit Value(Rep rep) : rep_(std::move(rep)) {}
  Rep rep_;
};

}  // namespace marmot::sqlite

#endif  // MARMOT_SQLITE_VALUE_H_
