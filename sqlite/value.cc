#include "sqlite/value.h"

#include <glog/logging.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"

namespace marmot::sqlite {

absl::string_view StorageClassName(StorageClass c) {
  switch (c) {
    case StorageClass::kNull:
      return "NULL";
    case StorageClass::kInteger:
      return "INTEGER";
    case StorageClass::kReal:
      return "REAL";
    case StorageClass::kText:
      return "TEXT";
    case StorageClass::kBlob:
      return "BLOB";
  }
  return "?";
}

int64_t Value::integer() const {
  CHECK(storage_class() == StorageClass::kInteger) << "not an INTEGER: " << DebugString();
  return std::get<1>(rep_);
}

double Value::real() const {
  CHECK(storage_class() == StorageClass::kReal) << "not a REAL: " << DebugString();
  return std::get<2>(rep_);
}

const std::string& Value::bytes() const {
  if (rep_.index() == 3) return std::get<3>(rep_);
  CHECK(rep_.index() == 4) << "not TEXT or BLOB: " << DebugString();
  return std::get<4>(rep_);
}

bool operator==(const Value& a, const Value& b) {
  if (a.rep_.index() != b.rep_.index()) return false;
  switch (a.storage_class()) {
    case StorageClass::kNull:
      return true;
    case StorageClass::kInteger:
      return a.integer() == b.integer();
    case StorageClass::kReal: {
      double x = a.real(), y = b.real();
      return std::memcmp(&x, &y, sizeof x) == 0;
    }
    case StorageClass::kText:
    case StorageClass::kBlob:
      return a.bytes() == b.bytes();
  }
  return false;
}

std::string Value::DebugString() const {
  switch (storage_class()) {
    case StorageClass::kNull:
      return "NULL";
    case StorageClass::kInteger:
      return absl::StrCat(std::get<1>(rep_));
    case StorageClass::kReal: {
      // Always shows it is a REAL: 2.0, not 2.
      std::string out = absl::StrFormat("%.17g", std::get<2>(rep_));
      if (out.find_first_of(".eEn") == std::string::npos) out += ".0";
      return out;
    }
    case StorageClass::kText:
      return absl::StrCat("'", absl::StrReplaceAll(std::get<3>(rep_), {{"'", "''"}}), "'");
    case StorageClass::kBlob: {
      std::string out = "X'";
      for (unsigned char c : std::get<4>(rep_)) absl::StrAppendFormat(&out, "%02x", c);
      return out + "'";
    }
  }
  return "?";
}

}  // namespace marmot::sqlite
