#include "replicator/table_sql.h"

#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace marmot::replicator {

std::string NextSqlToken(const std::string& sql, size_t* at) {
  size_t& i = *at;
  const size_t n = sql.size();
  while (i < n) {
    if (absl::ascii_isspace(static_cast<unsigned char>(sql[i]))) {
      ++i;
    } else if (sql.compare(i, 2, "--") == 0) {
      while (i < n && sql[i] != '\n') ++i;
    } else if (sql.compare(i, 2, "/*") == 0) {
      const size_t end = sql.find("*/", i + 2);
      i = end == std::string::npos ? n : end + 2;
    } else {
      break;
    }
  }
  if (i >= n) return "";
  const size_t start = i;
  const char c = sql[i];
  if (c == '"' || c == '`' || c == '\'' || c == '[') {
    const char close = c == '[' ? ']' : c;
    for (++i; i < n; ++i) {
      if (sql[i] != close) continue;
      if (close != ']' && i + 1 < n && sql[i + 1] == close) {
        ++i;  // A doubled quote stands for itself.
        continue;
      }
      ++i;
      break;
    }
  } else if (absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' ||
             static_cast<unsigned char>(c) >= 0x80) {
    while (i < n && (absl::ascii_isalnum(static_cast<unsigned char>(sql[i])) || sql[i] == '_' ||
                     sql[i] == '$' || static_cast<unsigned char>(sql[i]) >= 0x80)) {
      ++i;
    }
  } else {
    ++i;
  }
  return sql.substr(start, i - start);
}

namespace {

bool IsTableConstraint(const std::string& first_token) {
  const std::string word = absl::AsciiStrToUpper(first_token);
  return word == "CONSTRAINT" || word == "PRIMARY" || word == "UNIQUE" || word == "CHECK" ||
         word == "FOREIGN";
}

}  // namespace

std::optional<TableParts> SplitTable(const std::string& sql) {
  size_t at = 0;
  for (;;) {  // To the parenthesis that opens the column list.
    const std::string token = NextSqlToken(sql, &at);
    if (token.empty()) return std::nullopt;
    if (token == "(") break;
  }
  TableParts out;
  out.rest = sql.substr(0, at);
  size_t start = at;
  int depth = 0;
  for (;;) {
    const size_t token_at = at;
    const std::string token = NextSqlToken(sql, &at);
    if (token.empty()) return std::nullopt;
    if (token == "(") {
      ++depth;
      continue;
    }
    if (depth > 0) {
      depth -= token == ")";
      continue;
    }
    if (token != "," && token != ")") continue;
    std::string part(absl::StripAsciiWhitespace(sql.substr(start, token_at - start)));
    size_t first_at = 0;
    const std::string first = NextSqlToken(part, &first_at);
    if (first.empty() || first == "," || first == "(" || first == ")") return std::nullopt;
    if (IsTableConstraint(first) || (!out.rest.empty() && out.rest.back() == ',')) {
      // Constraints follow the columns; what follows a constraint is a constraint too.
      absl::StrAppend(&out.rest, part, ",");
    } else {
      out.columns.push_back(std::move(part));
    }
    start = at;
    if (token == ")") break;
  }
  absl::StrAppend(&out.rest, ")", sql.substr(at));
  return out;
}

std::string UnquotedName(const std::string& token) {
  if (token.size() < 2 ||
      (token[0] != '"' && token[0] != '`' && token[0] != '[' && token[0] != '\'')) {
    return token;
  }
  const char close = token[0] == '[' ? ']' : token[0];
  std::string inner = token.substr(1, token.size() - 2);
  if (close != ']') {
    const std::string doubled(2, close);
    for (size_t i = inner.find(doubled); i != std::string::npos; i = inner.find(doubled, i + 1)) {
      inner.erase(i, 1);
    }
  }
  return inner;
}

std::string ColumnName(const std::string& definition) {
  size_t at = 0;
  return absl::AsciiStrToLower(UnquotedName(NextSqlToken(definition, &at)));
}

namespace {

std::vector<std::string> Tokens(const std::string& sql) {
  std::vector<std::string> out;
  size_t at = 0;
  for (std::string t = NextSqlToken(sql, &at); !t.empty(); t = NextSqlToken(sql, &at)) {
    out.push_back(std::move(t));
  }
  return out;
}

// Whether `a` and `b` are the same tokens, but for names `renames` maps (lower case, unquoted)
// from a's to b's. A quoted string literal counts as a name here, as SQLite itself takes one
// for a name where a name goes.
bool SameUnderRenames(const std::vector<std::string>& a, const std::vector<std::string>& b,
                      const std::map<std::string, std::string>& renames) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] == b[i]) continue;
    // A name reads the same quoted or not, in any case (a string literal only as it is).
    if (a[i][0] != '\'' && b[i][0] != '\'' &&
        absl::AsciiStrToLower(UnquotedName(a[i])) == absl::AsciiStrToLower(UnquotedName(b[i]))) {
      continue;
    }
    auto it = renames.find(absl::AsciiStrToLower(UnquotedName(a[i])));
    if (it == renames.end() || it->second != absl::AsciiStrToLower(UnquotedName(b[i]))) {
      return false;
    }
  }
  return true;
}

// A column definition without its name.
std::vector<std::string> Remainder(const std::string& definition) {
  std::vector<std::string> out = Tokens(definition);
  if (!out.empty()) out.erase(out.begin());
  return out;
}

}  // namespace

bool SameButRenamed(const std::string& before, const std::string& after,
                    const std::map<std::string, std::string>& renames) {
  return SameUnderRenames(Tokens(before), Tokens(after), renames);
}

std::optional<ColumnDiff> DiffColumns(const std::string& before, const std::string& after) {
  std::optional<TableParts> was = SplitTable(before), is = SplitTable(after);
  if (!was.has_value() || !is.has_value()) return std::nullopt;
  std::map<std::string, const std::string*> had, has;
  for (const std::string& c : was->columns) had[ColumnName(c)] = &c;
  for (const std::string& c : is->columns) has[ColumnName(c)] = &c;
  if (had.size() != was->columns.size() || has.size() != is->columns.size()) return std::nullopt;
  // The columns both have, (index in `was`, index in `is`): they stand in the same order in
  // both, since nothing moves a column (RENAME COLUMN keeps its place, ADD COLUMN appends, DROP
  // COLUMN removes); columns moved about make the change unclear.
  std::vector<std::pair<size_t, size_t>> common;
  for (size_t i = 0; i < was->columns.size(); ++i) {
    auto now = has.find(ColumnName(was->columns[i]));
    if (now != has.end()) {
      common.emplace_back(i, static_cast<size_t>(now->second - is->columns.data()));
    }
  }
  for (size_t i = 1; i < common.size(); ++i) {
    if (common[i].second < common[i - 1].second) return std::nullopt;
  }
  ColumnDiff diff;
  std::map<std::string, std::string> renames;
  // Defined alike: a CHECK of the column names it, renamed too.
  auto alike = [](const std::string* r, const std::string* a) {
    return SameUnderRenames(Remainder(*r), Remainder(*a), {{ColumnName(*r), ColumnName(*a)}});
  };
  auto rename = [&](const std::string* r, const std::string* a) {
    size_t from_at = 0, to_at = 0;
    diff.renamed.emplace_back(UnquotedName(NextSqlToken(*r, &from_at)), NextSqlToken(*a, &to_at));
    renames[ColumnName(*r)] = ColumnName(*a);
  };
  // Between two columns both have, the columns that came where some are gone can only be
  // renamed ones, pair by pair with those gone, in order; those gone where none came were
  // dropped, those that came where none went were added (a table made again with a column in
  // the middle: the other nodes add it at the end, rows travel by name). After the last one
  // (the tail), those that came were added, those gone dropped, except that one gone and one
  // come alike are taken for a rename; text cannot tell a rename from a drop and an add there
  // (SQLite writes the same), so more alike ones make the change unclear.
  size_t was_from = 0, is_from = 0;
  for (size_t g = 0; g <= common.size(); ++g) {
    const bool tail = g == common.size();
    const size_t was_to = tail ? was->columns.size() : common[g].first;
    const size_t is_to = tail ? is->columns.size() : common[g].second;
    std::vector<const std::string*> gone, came;
    for (size_t i = was_from; i < was_to; ++i) gone.push_back(&was->columns[i]);
    for (size_t i = is_from; i < is_to; ++i) came.push_back(&is->columns[i]);
    if (!tail) {
      was_from = common[g].first + 1;
      is_from = common[g].second + 1;
    }
    if (!tail && !came.empty() && !gone.empty()) {
      if (came.size() != gone.size()) return std::nullopt;
      for (size_t k = 0; k < came.size(); ++k) {
        if (!alike(gone[k], came[k])) return std::nullopt;
        rename(gone[k], came[k]);
      }
      continue;
    }
    if (gone.size() == 1 && came.size() == 1 && alike(gone[0], came[0])) {
      rename(gone[0], came[0]);
      continue;
    }
    for (const std::string* r : gone) {
      for (const std::string* c : came) {
        if (alike(r, c)) return std::nullopt;
      }
      diff.dropped.push_back(ColumnName(*r));
    }
    for (const std::string* c : came) diff.added.push_back(*c);
  }
  // Everything else is as it was, but for the renamed names (SQLite rewrites them wherever the
  // table's statement uses them).
  if (!SameUnderRenames(Tokens(was->rest), Tokens(is->rest), renames)) return std::nullopt;
  for (const std::string& c : was->columns) {
    auto now = has.find(ColumnName(c));
    if (now != has.end() && !SameUnderRenames(Tokens(c), Tokens(*now->second), renames)) {
      return std::nullopt;
    }
  }
  if (diff.renamed.empty() && diff.dropped.empty() && diff.added.empty()) return std::nullopt;
  return diff;
}

bool DefinitionsChanged(const std::string& before, const std::string& after) {
  std::optional<TableParts> was = SplitTable(before), is = SplitTable(after);
  if (!was.has_value() || !is.has_value()) return false;
  if (!SameUnderRenames(Tokens(was->rest), Tokens(is->rest), {})) return true;
  std::map<std::string, const std::string*> has;
  for (const std::string& c : is->columns) has[ColumnName(c)] = &c;
  for (const std::string& c : was->columns) {
    auto now = has.find(ColumnName(c));
    if (now != has.end() && !SameUnderRenames(Tokens(c), Tokens(*now->second), {})) return true;
  }
  return false;
}

namespace {

// The tokens of CREATE TABLE `sql` before its column list, each with where it ends.
std::vector<std::pair<std::string, size_t>> HeadTokens(const std::string& sql) {
  std::vector<std::pair<std::string, size_t>> out;
  size_t at = 0;
  for (;;) {
    std::string token = NextSqlToken(sql, &at);
    if (token.empty()) return {};
    if (token == "(") return out;
    out.emplace_back(std::move(token), at);
  }
}

}  // namespace

std::optional<std::string> TableNameToken(const std::string& sql) {
  const std::vector<std::pair<std::string, size_t>> head = HeadTokens(sql);
  if (head.size() < 3) return std::nullopt;  // CREATE TABLE name
  return head.back().first;
}

std::optional<std::string> WithTableName(const std::string& sql, const std::string& name) {
  const std::vector<std::pair<std::string, size_t>> head = HeadTokens(sql);
  if (head.size() < 3) return std::nullopt;
  const size_t end = head.back().second;
  size_t start = end - head.back().first.size();
  if (head.size() >= 5 && head[head.size() - 2].first == ".") {  // schema . name
    start = head[head.size() - 3].second - head[head.size() - 3].first.size();
  }
  return absl::StrCat(sql.substr(0, start), name, sql.substr(end));
}

std::optional<std::vector<std::string>> AddedColumns(const std::string& before,
                                                     const std::string& after) {
  std::optional<ColumnDiff> diff = DiffColumns(before, after);
  if (!diff.has_value() || !diff->renamed.empty() || !diff->dropped.empty()) return std::nullopt;
  return diff->added;
}

}  // namespace marmot::replicator
