#include "tests/chaos/workload.h"

#include <glog/logging.h>
#include <sqlite3.h>

#include <chrono>
#include <random>

#include "absl/strings/str_cat.h"

namespace marmot::chaos {
namespace {

int64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A statement prepared once per writer.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) {
    CHECK_EQ(sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  sqlite3_stmt* get() { return stmt_; }

 private:
  sqlite3_stmt* stmt_ = nullptr;
};

}  // namespace

uint64_t Fnv1a(const void* data, size_t n) {
  uint64_t h = 1469598103934665603ull;
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

// The BLOB of an owned row: a function of (writer, value, length), so a writer can write it
// again without keeping it.
void Workload::Body(int writer, int64_t v, int64_t len, std::string* out) {
  std::mt19937_64 rng(static_cast<uint64_t>(writer) << 40 ^ static_cast<uint64_t>(v));
  out->resize(len);
  for (char& c : *out) c = static_cast<char>(rng());
}

std::string Workload::HotValue(int writer, int64_t seq) {
  return absl::StrCat("w", writer, "-", seq);
}

struct Workload::Writer {
  int id;    // 1-based, unique over the run
  int node;  // 1-based
  std::mt19937_64 rng;
  std::thread thread;
  std::vector<WriteRecord> history;
  std::map<int64_t, OwnedRow> rows;  // committed state of this writer's rows
  int64_t next_key = 0;
  int64_t seq = 0;
};

Workload::Workload(WorkloadOptions options, std::vector<std::string> db_paths)
    : options_(options), db_paths_(std::move(db_paths)) {
  int id = 0;
  for (int node = 1; node <= static_cast<int>(db_paths_.size()); ++node) {
    for (int slot = 0; slot < options_.writers_per_node; ++slot) {
      auto w = std::make_unique<Writer>();
      w->id = ++id;
      w->node = node;
      w->rng.seed(options_.seed * 1000003 + w->id);
      writers_.push_back(std::move(w));
    }
  }
}

Workload::~Workload() { Stop(); }

void Workload::Start() {
  for (auto& w : writers_) {
    Writer* raw = w.get();
    w->thread = std::thread([this, raw] { Run(raw); });
  }
}

void Workload::Stop() {
  stop_ = true;
  for (auto& w : writers_) {
    if (w->thread.joinable()) w->thread.join();
  }
}

std::vector<WriteRecord> Workload::History() const {
  std::vector<WriteRecord> all;
  for (const auto& w : writers_) all.insert(all.end(), w->history.begin(), w->history.end());
  return all;
}

std::map<std::pair<int, int64_t>, OwnedRow> Workload::OwnedModel() const {
  std::map<std::pair<int, int64_t>, OwnedRow> model;
  for (const auto& w : writers_) {
    for (const auto& [k, row] : w->rows) model[{w->id, k}] = row;
  }
  return model;
}

void Workload::Run(Writer* w) {
  sqlite3* db = nullptr;
  CHECK_EQ(sqlite3_open_v2(db_paths_[w->node - 1].c_str(), &db, SQLITE_OPEN_READWRITE, nullptr),
           SQLITE_OK);
  sqlite3_busy_timeout(db, 10000);
  {
    Statement begin(db, "BEGIN IMMEDIATE");
    Statement commit(db, "COMMIT");
    Statement insert(db, "INSERT INTO owned (w, k, v, body) VALUES (?1, ?2, ?3, ?4)");
    Statement update(db, "UPDATE owned SET v = ?3, body = ?4 WHERE w = ?1 AND k = ?2");
    Statement erase(db, "DELETE FROM owned WHERE w = ?1 AND k = ?2");
    Statement rekey(db, options_.partial_rekey
                            ? "UPDATE owned SET k = ?3 WHERE w = ?1 AND k = ?2"
                            : "UPDATE owned SET k = ?3, v = ?4, body = ?5 WHERE w = ?1 AND k = ?2");
    Statement read_own(db, "SELECT v FROM owned WHERE w = ?1 AND k = ?2");
    Statement hot_upsert(db,
                         "INSERT INTO hot (id, v, who, n) VALUES (?1, ?2, ?3, 1) ON CONFLICT (id) "
                         "DO UPDATE SET v = excluded.v, who = excluded.who, n = hot.n + 1");
    Statement hot_delete(db, "DELETE FROM hot WHERE id = ?1");
    std::string blob;

    auto uniform = [&](int64_t lo, int64_t hi) {
      return std::uniform_int_distribution<int64_t>(lo, hi)(w->rng);
    };
    auto pick_live = [&](const std::map<int64_t, OwnedRow>& rows) {
      auto it = rows.begin();
      std::advance(it, uniform(0, static_cast<int64_t>(rows.size()) - 1));
      return it->first;
    };
    // Runs a prepared statement; SQLITE_DONE or the error code.
    auto step = [&](Statement& s) {
      int rc = sqlite3_step(s.get());
      sqlite3_reset(s.get());
      sqlite3_clear_bindings(s.get());
      return rc;
    };

    while (!stop_.load()) {
      const int64_t r = uniform(0, 99);
      const bool big_txn = r < 4;
      const bool quick_run = r >= 4 && r < 8;
      const int statements = big_txn ? uniform(20, 60) : 1;
      const int transactions = quick_run ? uniform(10, 40) : 1;
      for (int t = 0; t < transactions && !stop_.load(); ++t) {
        // The state this transaction builds on; kept only if it commits.
        std::map<int64_t, OwnedRow> rows = w->rows;
        int64_t next_key = w->next_key, seq = w->seq;
        std::vector<WriteRecord> pending;
        int rc = step(begin);
        bool ok = rc == SQLITE_DONE;
        for (int s = 0; ok && s < statements; ++s) {
          WriteRecord rec{};
          rec.node = w->node;
          rec.writer = w->id;
          const int64_t op = uniform(0, 99);
          const bool few = rows.size() < 5;
          const bool many = rows.size() > 300;
          Statement* stmt = nullptr;
          if (op < 20) {  // a hot row
            rec.table = 'h';
            rec.key = uniform(0, kHotRows - 1);
            rec.v = ++seq;
            if (uniform(0, 9) == 0) {
              rec.op = 'D';
              stmt = &hot_delete;
              sqlite3_bind_int64(stmt->get(), 1, rec.key);
            } else {
              rec.op = 'P';
              stmt = &hot_upsert;
              std::string v = HotValue(w->id, rec.v);
              sqlite3_bind_int64(stmt->get(), 1, rec.key);
              sqlite3_bind_text(stmt->get(), 2, v.data(), static_cast<int>(v.size()),
                                SQLITE_TRANSIENT);
              sqlite3_bind_int64(stmt->get(), 3, w->id);
            }
          } else {
            rec.table = 'o';
            if (few || op < 45 || (op < 55 && !many)) {
              rec.op = 'I';
              rec.key = next_key++;
            } else if (op < 75) {
              rec.op = 'U';
              rec.key = pick_live(rows);
            } else if (op < 90) {
              rec.op = 'D';
              rec.key = pick_live(rows);
            } else {
              rec.op = 'K';
              rec.key = pick_live(rows);
              rec.new_key = next_key++;
            }
            if (rec.op == 'I' || rec.op == 'U') {
              const int64_t size_class = uniform(0, 99);
              const int64_t len = size_class < 2    ? uniform(64 << 10, 256 << 10)
                                  : size_class < 10 ? uniform(1 << 10, 16 << 10)
                                                    : uniform(16, 200);
              rec.v = ++seq;
              Body(w->id, rec.v, len, &blob);
              rec.body_len = len;
              rec.body_hash = Fnv1a(blob.data(), blob.size());
              stmt = rec.op == 'I' ? &insert : &update;
              sqlite3_bind_int64(stmt->get(), 3, rec.v);
              sqlite3_bind_blob(stmt->get(), 4, blob.data(), static_cast<int>(blob.size()),
                                SQLITE_STATIC);
            } else if (rec.op == 'K') {
              stmt = &rekey;
              sqlite3_bind_int64(stmt->get(), 3, rec.new_key);
              if (!options_.partial_rekey) {
                const OwnedRow& row = rows.at(rec.key);
                Body(w->id, row.v, row.body_len, &blob);
                sqlite3_bind_int64(stmt->get(), 4, row.v);
                sqlite3_bind_blob(stmt->get(), 5, blob.data(), static_cast<int>(blob.size()),
                                  SQLITE_STATIC);
              }
            } else {
              stmt = &erase;
            }
            sqlite3_bind_int64(stmt->get(), 1, w->id);
            sqlite3_bind_int64(stmt->get(), 2, rec.key);
            if (rec.op != 'I') {
              // Read-your-writes on the origin: the row should hold this writer's last commit.
              sqlite3_bind_int64(read_own.get(), 1, w->id);
              sqlite3_bind_int64(read_own.get(), 2, rec.key);
              int rrc = sqlite3_step(read_own.get());
              const int64_t seen = rrc == SQLITE_ROW ? sqlite3_column_int64(read_own.get(), 0) : -1;
              sqlite3_reset(read_own.get());
              if (rrc == SQLITE_ROW || rrc == SQLITE_DONE) {
                ++own_reads_;
                if (seen != rows.at(rec.key).v) {
                  ++stale_reads_;
                  VLOG(1) << "writer " << w->id << " key " << rec.key << ": read v=" << seen
                          << ", last committed v=" << rows.at(rec.key).v;
                }
              }
            }
          }
          rc = step(*stmt);
          if (rc != SQLITE_DONE) {
            ok = false;
            break;
          }
          if (rec.table == 'o' && sqlite3_changes(db) != 1) {
            // The writer alone changes its rows: anything else means a row it owns was changed
            // under it (a resurrected or vanished row). Recorded for the checker's log.
            LOG(ERROR) << "writer " << w->id << " on node " << w->node << ": " << rec.op
                       << " of key " << rec.key << " changed " << sqlite3_changes(db) << " rows";
          }
          if (rec.table == 'o') {
            if (rec.op == 'I' || rec.op == 'U') {
              rows[rec.key] = OwnedRow{rec.v, rec.body_hash, rec.body_len};
            } else if (rec.op == 'D') {
              rows.erase(rec.key);
            } else {
              rows[rec.new_key] = rows[rec.key];
              rows.erase(rec.key);
            }
          }
          pending.push_back(rec);
        }
        if (ok) ok = step(commit) == SQLITE_DONE;
        if (!ok) {
          VLOG(1) << "writer " << w->id << ": " << sqlite3_errmsg(db);
          sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
          failed_ += 1;
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
          continue;
        }
        const int64_t now = NowMicros();
        for (WriteRecord& rec : pending) {
          rec.micros = now;
          w->history.push_back(rec);
        }
        committed_ += static_cast<int64_t>(pending.size());
        w->rows = std::move(rows);
        w->next_key = next_key;
        w->seq = seq;
        if (!quick_run) {
          std::this_thread::sleep_for(std::chrono::milliseconds(uniform(0, 2 * options_.pause_ms)));
        }
      }
    }
  }
  sqlite3_close(db);
}

}  // namespace marmot::chaos
