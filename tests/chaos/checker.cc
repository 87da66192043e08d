#include "tests/chaos/checker.h"

#include <sqlite3.h>

#include <cinttypes>
#include <functional>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace marmot::chaos {
namespace {

// A value as a literal that keeps its storage class: 2, 2.0, '2' and X'02' all differ.
std::string Literal(sqlite3_stmt* stmt, int col) {
  switch (sqlite3_column_type(stmt, col)) {
    case SQLITE_INTEGER:
      return absl::StrCat(sqlite3_column_int64(stmt, col));
    case SQLITE_FLOAT:
      return absl::StrFormat("%.17gr", sqlite3_column_double(stmt, col));
    case SQLITE_TEXT:
      return absl::StrCat("'", reinterpret_cast<const char*>(sqlite3_column_text(stmt, col)), "'");
    case SQLITE_BLOB: {
      const void* p = sqlite3_column_blob(stmt, col);
      int n = sqlite3_column_bytes(stmt, col);
      return absl::StrFormat("X[%d bytes, fnv %016x]", n, Fnv1a(p, n));
    }
    default:
      return "NULL";
  }
}

// Runs `sql`; calls `row` for each row. Returns the error message or "".
std::string ForEachRow(sqlite3* db, const char* sql,
                       const std::function<void(sqlite3_stmt*)>& row) {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) != SQLITE_OK) return sqlite3_errmsg(db);
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) row(stmt);
  std::string error = rc == SQLITE_DONE ? "" : sqlite3_errmsg(db);
  sqlite3_finalize(stmt);
  return error;
}

// Reads `table` ordered by its first `key_columns` columns into state->rows and digests.
std::string ReadTable(sqlite3* db, const std::string& table, int key_columns, NodeState* state,
                      const std::function<void(sqlite3_stmt*)>& extra) {
  std::string order;
  for (int i = 1; i <= key_columns; ++i) absl::StrAppend(&order, i > 1 ? ", " : "", i);
  const std::string sql = absl::StrCat("SELECT * FROM \"", table, "\" ORDER BY ", order);
  uint64_t digest = 1469598103934665603ull;
  auto& rows = state->rows[table];
  std::string error = ForEachRow(db, sql.c_str(), [&](sqlite3_stmt* stmt) {
    std::string key, row;
    for (int c = 0; c < sqlite3_column_count(stmt); ++c) {
      std::string lit = Literal(stmt, c);
      if (c < key_columns) absl::StrAppend(&key, c > 0 ? "," : "", lit);
      absl::StrAppend(&row, c > 0 ? "|" : "", lit);
    }
    absl::StrAppend(&row, "\n");
    digest = (digest ^ Fnv1a(row.data(), row.size())) * 1099511628211ull;
    rows[key] = row.substr(0, row.size() - 1);
    if (extra) extra(stmt);
  });
  state->digests[table] = digest;
  return error;
}

}  // namespace

NodeState ReadNode(const std::string& db_path) {
  NodeState state;
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    state.error = sqlite3_errmsg(db);
    sqlite3_close(db);
    return state;
  }
  sqlite3_busy_timeout(db, 10000);
  std::string error;
  if (sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr) != SQLITE_OK) error = sqlite3_errmsg(db);
  if (error.empty()) {
    error = ReadTable(db, "owned", 2, &state, [&](sqlite3_stmt* stmt) {
      const void* body = sqlite3_column_blob(stmt, 3);
      int n = sqlite3_column_bytes(stmt, 3);
      state
          .owned[{static_cast<int>(sqlite3_column_int64(stmt, 0)), sqlite3_column_int64(stmt, 1)}] =
          OwnedRow{sqlite3_column_int64(stmt, 2), Fnv1a(body, n), n};
    });
  }
  if (error.empty()) {
    error = ReadTable(db, "hot", 1, &state, [&](sqlite3_stmt* stmt) {
      state.hot[sqlite3_column_int64(stmt, 0)] = Literal(stmt, 1);
    });
  }
  if (error.empty()) {
    error =
        ForEachRow(db, "SELECT count(*) FROM \"__marmot__dead_letters\"",
                   [&](sqlite3_stmt* stmt) { state.dead_letters = sqlite3_column_int64(stmt, 0); });
  }
  if (error.empty()) {
    std::vector<std::string> problems;
    error = ForEachRow(db, "PRAGMA quick_check", [&](sqlite3_stmt* stmt) {
      const unsigned char* text = sqlite3_column_text(stmt, 0);
      problems.push_back(text != nullptr ? reinterpret_cast<const char*>(text) : "");
    });
    state.quick_check = absl::StrJoin(problems, "; ");
  }
  sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  state.error = error;
  state.ok = error.empty();
  return state;
}

std::vector<NodeState> WaitForSettle(const std::vector<std::string>& db_paths,
                                     const std::map<std::pair<int, int64_t>, OwnedRow>& model,
                                     std::chrono::milliseconds timeout, int stable_polls) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::vector<NodeState> states;
  std::map<std::string, uint64_t> last;
  int stable = 0;
  while (true) {
    states.clear();
    bool agree = true;
    for (const std::string& path : db_paths) {
      states.push_back(ReadNode(path));
      const NodeState& s = states.back();
      agree = agree && s.ok && s.digests == states.front().digests && s.owned == model;
    }
    if (agree && states.front().digests == last) {
      if (++stable >= stable_polls) return states;
    } else {
      stable = agree ? 1 : 0;
    }
    last = agree ? states.front().digests : std::map<std::string, uint64_t>{};
    if (std::chrono::steady_clock::now() >= deadline) return states;
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
}

bool CheckReport::all_pass() const {
  for (const Verdict& v : verdicts) {
    if (!v.pass) return false;
  }
  return !verdicts.empty();
}

std::string CheckReport::ToString() const {
  std::string out;
  for (const Verdict& v : verdicts) {
    absl::StrAppend(
        &out, absl::StrFormat("  %-16s %-5s %s\n", v.property, v.pass ? "PASS" : "FAIL", v.detail));
  }
  return out;
}

CheckReport Check(const std::vector<NodeState>& nodes,
                  const std::map<std::pair<int, int64_t>, OwnedRow>& model,
                  const std::vector<WriteRecord>& history) {
  CheckReport report;
  constexpr int kMaxListed = 10;

  // Every file intact (an unreadable one fails convergence below, with its error).
  {
    Verdict v{"no corruption", true, "PRAGMA quick_check says ok on every node"};
    for (size_t n = 0; n < nodes.size(); ++n) {
      if (nodes[n].ok && nodes[n].quick_check != "ok") {
        if (v.pass) v.detail.clear();
        v.pass = false;
        absl::StrAppend(&v.detail, "node ", n + 1, ": ", nodes[n].quick_check, "; ");
      }
    }
    report.verdicts.push_back(v);
  }

  // Convergence.
  {
    Verdict v{"convergence", true, ""};
    int64_t rows = 0;
    for (size_t n = 0; n < nodes.size(); ++n) {
      if (!nodes[n].ok) {
        v.pass = false;
        absl::StrAppend(&v.detail, "node ", n + 1, " unreadable: ", nodes[n].error, "; ");
      }
    }
    if (v.pass) {
      for (const auto& [table, digest] : nodes[0].digests) {
        rows += static_cast<int64_t>(nodes[0].rows.at(table).size());
        for (size_t n = 1; n < nodes.size(); ++n) {
          if (nodes[n].digests.at(table) == digest) continue;
          v.pass = false;
          int listed = 0;
          const auto& a = nodes[0].rows.at(table);
          const auto& b = nodes[n].rows.at(table);
          std::set<std::string> keys;
          for (const auto& [k, r] : a) keys.insert(k);
          for (const auto& [k, r] : b) keys.insert(k);
          for (const std::string& k : keys) {
            auto ia = a.find(k), ib = b.find(k);
            std::string ra = ia == a.end() ? "(absent)" : ia->second;
            std::string rb = ib == b.end() ? "(absent)" : ib->second;
            if (ra == rb) continue;
            if (listed++ < kMaxListed) {
              absl::StrAppend(&v.detail, "\n    ", table, " key ", k, ": node 1 ", ra, " / node ",
                              n + 1, " ", rb);
            }
          }
          absl::StrAppend(&v.detail, "\n    ", table, ": ", listed,
                          " rows differ between node 1 and node ", n + 1);
        }
      }
    }
    if (v.pass)
      v.detail = absl::StrCat(nodes.size(), " nodes, ", rows, " rows in 2 tables, identical");
    report.verdicts.push_back(v);
  }

  // Lost writes and resurrections in `owned`.
  std::set<std::pair<int, int64_t>> ever_written;
  int64_t owned_writes = 0;
  for (const WriteRecord& r : history) {
    if (r.table != 'o') continue;
    ++owned_writes;
    ever_written.insert({r.writer, r.key});
    if (r.op == 'K') ever_written.insert({r.writer, r.new_key});
  }
  {
    Verdict lost{"no lost write", true, ""}, back{"no resurrection", true, ""};
    int64_t lost_count = 0, back_count = 0;
    for (size_t n = 0; n < nodes.size(); ++n) {
      const auto& have = nodes[n].owned;
      for (const auto& [key, row] : model) {
        auto it = have.find(key);
        if (it != have.end() && it->second == row) continue;
        if (lost_count++ < kMaxListed) {
          absl::StrAppend(&lost.detail, "\n    node ", n + 1, " writer ", key.first, " key ",
                          key.second, ": expected v=", row.v, " (", row.body_len, " bytes), found ",
                          it == have.end() ? "no row"
                                           : absl::StrCat("v=", it->second.v, " (",
                                                          it->second.body_len, " bytes)"));
        }
      }
      for (const auto& [key, row] : have) {
        if (model.count(key)) continue;
        if (back_count++ < kMaxListed) {
          absl::StrAppend(
              &back.detail, "\n    node ", n + 1, " writer ", key.first, " key ", key.second,
              " v=", row.v,
              ever_written.count(key) ? ": deleted or moved, yet present" : ": never written");
        }
      }
    }
    lost.pass = lost_count == 0;
    back.pass = back_count == 0;
    int64_t gone = static_cast<int64_t>(ever_written.size() - model.size());
    lost.detail = lost.pass ? absl::StrCat(owned_writes, " committed writes to ",
                                           ever_written.size(), " owned rows; the ", model.size(),
                                           " surviving rows hold their last write on every node")
                            : absl::StrCat(lost_count, " row copies wrong:", lost.detail);
    back.detail = back.pass
                      ? absl::StrCat(gone, " deleted or moved rows absent on every node")
                      : absl::StrCat(back_count, " row copies that should not exist:", back.detail);
    report.verdicts.push_back(lost);
    report.verdicts.push_back(back);
  }

  // Hot rows hold a value some writer committed.
  {
    std::map<int64_t, std::set<std::string>> written;
    std::set<int64_t> deleted;
    int64_t hot_writes = 0;
    for (const WriteRecord& r : history) {
      if (r.table != 'h') continue;
      ++hot_writes;
      if (r.op == 'D') {
        deleted.insert(r.key);
      } else {
        written[r.key].insert(absl::StrCat("'", Workload::HotValue(r.writer, r.v), "'"));
      }
    }
    Verdict v{"hot rows valid", true, ""};
    for (size_t n = 0; n < nodes.size(); ++n) {
      for (int64_t id = 0; id < kHotRows; ++id) {
        auto it = nodes[n].hot.find(id);
        bool fine = it == nodes[n].hot.end() ? (deleted.count(id) || !written.count(id))
                                             : written[id].count(it->second) > 0;
        if (!fine) {
          v.pass = false;
          absl::StrAppend(
              &v.detail, "\n    node ", n + 1, " hot id ", id, ": ",
              it == nodes[n].hot.end() ? "absent, never deleted" : it->second + " never written");
        }
      }
    }
    if (v.pass)
      v.detail =
          absl::StrCat(hot_writes, " committed writes to ", kHotRows, " hot rows from every node");
    report.verdicts.push_back(v);
  }

  {
    Verdict v{"no dead letters", true, ""};
    for (size_t n = 0; n < nodes.size(); ++n) {
      if (nodes[n].dead_letters != 0) {
        v.pass = false;
        absl::StrAppend(&v.detail, "node ", n + 1, ": ", nodes[n].dead_letters, " dead letters; ");
      }
    }
    if (v.pass) v.detail = "0 on every node";
    report.verdicts.push_back(v);
  }
  return report;
}

}  // namespace marmot::chaos
