#include "raft/testing/test_node.h"

#include "glog/logging.h"

namespace marmot::raft::testing {

namespace {

void PutU64(std::string* s, uint64_t v) { s->append(reinterpret_cast<const char*>(&v), 8); }

bool GetU64(const std::string& s, size_t* pos, uint64_t* v) {
  if (*pos + 8 > s.size()) return false;
  memcpy(v, s.data() + *pos, 8);
  *pos += 8;
  return true;
}

}  // namespace

uint64_t ChainHash(uint64_t prev, uint64_t index, uint64_t term, const std::string& data) {
  // FNV-1a over (prev, index, term, data): deterministic and good enough to tell histories
  // apart in tests.
  uint64_t h = 1469598103934665603ull;
  auto mix = [&h](const void* p, size_t n) {
    const unsigned char* b = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < n; ++i) {
      h ^= b[i];
      h *= 1099511628211ull;
    }
  };
  mix(&prev, 8);
  mix(&index, 8);
  mix(&term, 8);
  mix(data.data(), data.size());
  return h;
}

std::string StateMachine::Encode() const {
  std::string s;
  PutU64(&s, applied);
  PutU64(&s, hash);
  std::string cs = conf_state.SerializeAsString();
  PutU64(&s, cs.size());
  s += cs;
  PutU64(&s, payloads.size());
  for (const auto& p : payloads) {
    PutU64(&s, p.size());
    s += p;
  }
  return s;
}

bool StateMachine::Decode(const std::string& data, StateMachine* out) {
  if (data.empty()) {  // a bootstrap snapshot: the empty state machine
    *out = StateMachine();
    return true;
  }
  size_t pos = 0;
  uint64_t n;
  if (!GetU64(data, &pos, &out->applied) || !GetU64(data, &pos, &out->hash) ||
      !GetU64(data, &pos, &n) || pos + n > data.size()) {
    return false;
  }
  if (!out->conf_state.ParseFromString(data.substr(pos, n))) return false;
  pos += n;
  if (!GetU64(data, &pos, &n)) return false;
  out->payloads.clear();
  for (uint64_t i = 0; i < n; ++i) {
    uint64_t len;
    if (!GetU64(data, &pos, &len) || pos + len > data.size()) return false;
    out->payloads.push_back(data.substr(pos, len));
    pos += len;
  }
  return true;
}

void StateMachine::ApplyNormal(const v1::Entry& e) {
  hash = ChainHash(hash, e.index(), e.term(), e.data());
  if (!e.data().empty()) payloads.push_back(e.data());
}

TestNode::TestNode(uint64_t id, MemoryLogStorage storage, Config base, Hooks hooks)
    : id_(id), base_(base), hooks_(std::move(hooks)), storage_(std::move(storage)) {
  // The state machine starts as the storage's snapshot describes it.
  auto snap = storage_.Snapshot();
  CHECK(snap.ok());
  sm_.applied = snap->metadata().index();
  sm_.conf_state = snap->metadata().conf_state();
  Restart(base.random_seed);
}

void TestNode::Crash() { raw_.reset(); }

void TestNode::Restart(uint64_t seed) {
  Config c = base_;
  c.id = id_;
  c.storage = &storage_;
  c.applied = sm_.applied;
  c.random_seed = seed;
  auto r = RawNode::Create(c);
  CHECK(r.ok()) << "node " << id_ << ": " << r.status();
  raw_ = std::move(*r);
}

bool TestNode::HandleReady(std::vector<v1::Message>* out) {
  if (!raw_ || !raw_->HasReady()) return false;
  auto rd_or = raw_->GetReady();
  CHECK(rd_or.ok()) << rd_or.status();
  Ready& rd = *rd_or;
  // 1. Persist.
  if (rd.snapshot) {
    auto s = storage_.ApplySnapshot(*rd.snapshot);
    CHECK(s.ok()) << "node " << id_ << ": " << s;
  }
  if (!rd.entries.empty()) {
    auto s = storage_.Append(rd.entries);
    CHECK(s.ok()) << "node " << id_ << ": " << s;
    if (hooks_.on_persist) hooks_.on_persist(id_, rd.entries);
  }
  if (rd.hard_state) storage_.SetHardState(*rd.hard_state);
  // 2. Apply: the snapshot first, then committed entries.
  if (rd.snapshot) {
    StateMachine next;
    CHECK(StateMachine::Decode(rd.snapshot->data(), &next))
        << "node " << id_ << ": undecodable snapshot";
    next.conf_state = rd.snapshot->metadata().conf_state();
    next.applied = rd.snapshot->metadata().index();
    sm_ = std::move(next);
    if (hooks_.on_install_snapshot) hooks_.on_install_snapshot(id_, *rd.snapshot, sm_);
  }
  for (const auto& e : rd.committed_entries) {
    if (e.index() <= sm_.applied) continue;  // covered by the snapshot just installed
    CHECK_EQ(e.index(), sm_.applied + 1) << "node " << id_ << " applies out of order";
    if (e.type() == v1::ENTRY_CONF_CHANGE) {
      v1::ConfChange cc;
      CHECK(cc.ParseFromString(e.data()));
      sm_.conf_state = raw_->ApplyConfChange(cc);
      sm_.hash = ChainHash(sm_.hash, e.index(), e.term(), e.data());
    } else {
      sm_.ApplyNormal(e);
    }
    sm_.applied = e.index();
    if (hooks_.on_apply) hooks_.on_apply(id_, e, sm_);
  }
  for (auto& r : rd.read_states) read_states_.push_back(std::move(r));
  // 3. Send, 4. Advance.
  for (auto& m : rd.messages) out->push_back(std::move(m));
  CHECK(raw_->Advance().ok());
  return true;
}

void TestNode::SnapshotAndCompact(uint64_t keep_entries) {
  // The held snapshot may be newer than the compaction point (we keep a few entries).
  auto held = storage_.Snapshot();
  CHECK(held.ok());
  const uint64_t snap_index = held->metadata().index();
  if (sm_.applied <= snap_index || sm_.applied > storage_.LastIndex()) return;
  auto snap = storage_.CreateSnapshot(sm_.applied, sm_.conf_state, sm_.Encode());
  CHECK(snap.ok()) << snap.status();
  if (sm_.applied > keep_entries && sm_.applied - keep_entries > storage_.FirstIndex() - 1) {
    CHECK(storage_.Compact(sm_.applied - keep_entries).ok());
  }
}

}  // namespace marmot::raft::testing
