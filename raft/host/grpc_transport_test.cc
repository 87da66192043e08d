// GrpcTransport: delivery, batching across shards, malformed and hostile input, snapshots in
// checked chunks, unreachable peers, fault injection.
#include "raft/host/grpc_transport.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "proto/transport.grpc.pb.h"
#include "raft/host/env_manual_clock.h"
#include "raft/host/snapshot_receipt.h"
#include "raft/host/test_dir.h"

namespace marmot::raft::host {
namespace {

namespace tv1 = ::marmot::raft::transport::v1;

class RecordingHandler : public MessageHandler {
 public:
  void HandleMessages(std::vector<v1::Message> messages) override {
    std::lock_guard<std::mutex> l(mu_);
    for (auto& m : messages) messages_.push_back(std::move(m));
    cv_.notify_all();
  }
  void HandleUnreachable(uint64_t node) override {
    std::lock_guard<std::mutex> l(mu_);
    unreachable_.push_back(node);
    cv_.notify_all();
  }
  void HandleSnapshotStatus(uint64_t shard, uint64_t node, bool ok) override {
    std::lock_guard<std::mutex> l(mu_);
    snapshot_status_.push_back({shard, node, ok});
    cv_.notify_all();
  }
  // Recorded with the other messages; its data names the payload's file.
  void HandleSnapshot(v1::Message m) override { HandleMessages({std::move(m)}); }
  // Copies of what arrived so far: the transport's threads may still add to them.
  std::vector<v1::Message> Messages() {
    std::lock_guard<std::mutex> l(mu_);
    return messages_;
  }
  std::vector<uint64_t> Unreachable() {
    std::lock_guard<std::mutex> l(mu_);
    return unreachable_;
  }
  struct Status {
    uint64_t shard, node;
    bool ok;
  };
  std::vector<Status> SnapshotStatuses() {
    std::lock_guard<std::mutex> l(mu_);
    return snapshot_status_;
  }
  // Waits until `pred` holds (checked under the lock).
  bool WaitFor(std::function<bool()> pred, absl::Duration d = absl::Seconds(10)) {
    std::unique_lock<std::mutex> l(mu_);
    return cv_.wait_for(l, absl::ToChronoMilliseconds(d), pred);
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<v1::Message> messages_;
  std::vector<uint64_t> unreachable_;
  std::vector<Status> snapshot_status_;
};

std::unique_ptr<GrpcTransport> StartTransport(uint64_t id, const std::string& dir,
                                              MessageHandler* h, size_t chunk = 64 << 10,
                                              SnapshotCheck check = nullptr) {
  GrpcTransportOptions o;
  o.node_id = id;
  o.bind_address = "127.0.0.1:0";
  o.snapshot_dir = dir;
  o.snapshot_chunk_bytes = chunk;
  o.check_snapshot = std::move(check);
  o.shards = 16;
  o.max_message_bytes = 1 << 20;
  auto t = std::make_unique<GrpcTransport>(o);
  EXPECT_TRUE(t->Start(h).ok());
  return t;
}

v1::Message Msg(uint64_t from, uint64_t to, uint64_t shard, uint64_t index) {
  v1::Message m;
  m.set_type(v1::MSG_APP);
  m.set_from(from);
  m.set_to(to);
  m.set_shard(shard);
  m.set_index(index);
  return m;
}

// Sends probes from `t` until `h` (the receiver's handler) got one, then forgets them: the
// pair's stream is open. (Messages sent before that are dropped, as Raft expects.)
bool WaitConnected(GrpcTransport* t, uint64_t from, uint64_t to, RecordingHandler* h) {
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline) {
    t->Send({Msg(from, to, 0, 999999)});
    if (h->WaitFor([&] { return !h->messages_.empty(); }, absl::Milliseconds(50))) {
      absl::SleepFor(absl::Milliseconds(100));
      std::lock_guard<std::mutex> l(h->mu_);
      h->messages_.clear();
      return true;
    }
  }
  return false;
}

TEST(GrpcTransportTest, MessagesOfAllShardsArriveInOrder) {
  const std::string dir = FreshTestDir();
  RecordingHandler h1, h2;
  auto t1 = StartTransport(1, dir, &h1);
  auto t2 = StartTransport(2, dir, &h2);
  t1->SetPeerAddress(2, absl::StrCat("127.0.0.1:", t2->bound_port()));
  ASSERT_TRUE(WaitConnected(t1.get(), 1, 2, &h2));
  std::vector<v1::Message> out;
  for (uint64_t i = 0; i < 100; ++i) out.push_back(Msg(1, 2, i % 16, i));
  t1->Send(out);
  ASSERT_TRUE(h2.WaitFor([&] { return h2.messages_.size() == 100; }));
  const std::vector<v1::Message> got = h2.Messages();
  for (uint64_t i = 0; i < 100; ++i) {
    EXPECT_EQ(got[i].index(), i);
    EXPECT_EQ(got[i].shard(), i % 16);
  }
  t1->Stop();
  t2->Stop();
}

TEST(GrpcTransportTest, AnAppendLargerThanAGrpcMessageArrivesWholeAndTheStreamStaysUp) {
  // Regression (issue 16): an append carrying one entry larger than the gRPC message limit
  // failed the write, which ended the pair's stream for every shard; Raft sent it again, and
  // the stream broke again, forever.
  const std::string dir = FreshTestDir();
  RecordingHandler h1, h2;
  auto t1 = StartTransport(1, dir, &h1);  // gRPC messages of at most 1 MiB
  auto t2 = StartTransport(2, dir, &h2);
  t1->SetPeerAddress(2, absl::StrCat("127.0.0.1:", t2->bound_port()));
  ASSERT_TRUE(WaitConnected(t1.get(), 1, 2, &h2));
  {
    std::lock_guard<std::mutex> l(h1.mu_);
    h1.unreachable_.clear();
  }
  // Given an append of shard 3 with a 10 MiB entry, then an append of shard 3 and one of
  // shard 1; the same from node 2 to node 1 (the accepting side writes on the dialed stream)
  v1::Message big = Msg(1, 2, 3, 10);
  std::string data(10 << 20, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 131 + (i >> 12));
  big.add_entries()->set_data(data);
  v1::Message big_back = big;
  big_back.set_from(2);
  big_back.set_to(1);
  t1->Send({big, Msg(1, 2, 3, 11), Msg(1, 2, 1, 20)});
  t2->Send({big_back});
  // Then every message arrives, shard 3's in order and the large one intact
  ASSERT_TRUE(h2.WaitFor([&] { return h2.messages_.size() == 3; }, absl::Seconds(20)))
      << h2.Messages().size() << " message(s) arrived";
  std::vector<uint64_t> shard3;
  for (const auto& m : h2.Messages()) {
    if (m.shard() == 3) shard3.push_back(m.index());
    if (m.index() == 10) {
      ASSERT_EQ(m.entries_size(), 1);
      EXPECT_TRUE(m.entries(0).data() == data);
    }
  }
  EXPECT_EQ(shard3, (std::vector<uint64_t>{10, 11}));
  ASSERT_TRUE(h1.WaitFor([&] { return h1.messages_.size() == 1; }, absl::Seconds(20)));
  EXPECT_TRUE(h1.Messages()[0].entries(0).data() == data);
  // And the stream never broke: nobody was reported unreachable, and small messages still flow
  {
    std::lock_guard<std::mutex> l(h1.mu_);
    EXPECT_TRUE(h1.unreachable_.empty());
  }
  t1->Send({Msg(1, 2, 0, 30)});
  EXPECT_TRUE(h2.WaitFor([&] { return h2.messages_.size() == 4; }));
  t1->Stop();
  t2->Stop();
}

TEST(GrpcTransportTest, ABusyAddressIsRefused) {
  // Regression: with gRPC's default SO_REUSEPORT a second node could listen on the first one's
  // address and take part of its traffic.
  const std::string dir = FreshTestDir();
  RecordingHandler h1, h2;
  auto t1 = StartTransport(1, dir, &h1);
  GrpcTransportOptions o;
  o.node_id = 2;
  o.bind_address = absl::StrCat("127.0.0.1:", t1->bound_port());
  o.snapshot_dir = dir;
  GrpcTransport t2(o);
  absl::Status s = t2.Start(&h2);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("cannot listen"), absl::string_view::npos) << s;
  t2.Stop();
  t1->Stop();
}

TEST(GrpcTransportTest, UnreachablePeerIsReportedAndReconnectedLater) {
  const std::string dir = FreshTestDir();
  RecordingHandler h1, h2;
  auto t1 = StartTransport(1, dir, &h1);
  // Nobody listens on this port yet.
  int port;
  {
    auto probe = StartTransport(9, dir, &h2);
    port = probe->bound_port();
  }
  t1->SetPeerAddress(2, absl::StrCat("127.0.0.1:", port));
  t1->Send({Msg(1, 2, 0, 1)});
  ASSERT_TRUE(h1.WaitFor([&] { return !h1.unreachable_.empty(); }));
  EXPECT_EQ(h1.Unreachable()[0], 2u);
  // The peer comes up on that port: later messages get through.
  GrpcTransportOptions o;
  o.node_id = 2;
  o.bind_address = absl::StrCat("127.0.0.1:", port);
  o.snapshot_dir = dir;
  GrpcTransport t2(o);
  ASSERT_TRUE(t2.Start(&h2).ok());
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  bool got = false;
  while (!got && absl::Now() < deadline) {
    t1->Send({Msg(1, 2, 0, 7)});
    got = h2.WaitFor([&] { return !h2.messages_.empty(); }, absl::Milliseconds(100));
  }
  EXPECT_TRUE(got);
  t1->Stop();
  t2.Stop();
}

TEST(GrpcTransportTest, ADialerBacksOffOnItsClockDoublingUpToTheMaximum) {
  // Given node 1, on a clock the test moves, dialing node 2 where nobody listens,
  const std::string dir = FreshTestDir();
  int port;
  {
    RecordingHandler unused;
    port = StartTransport(9, dir, &unused)->bound_port();
  }
  ManualClockEnv clock;
  RecordingHandler h;
  GrpcTransportOptions o;
  o.node_id = 1;
  o.bind_address = "127.0.0.1:0";
  o.snapshot_dir = dir;
  o.min_backoff = absl::Seconds(1);
  o.max_backoff = absl::Seconds(4);
  o.env = &clock;
  GrpcTransport t(o);
  ASSERT_TRUE(t.Start(&h).ok());
  t.SetPeerAddress(2, absl::StrCat("127.0.0.1:", port));
  auto failures = [&] { return h.Unreachable().size(); };
  ASSERT_TRUE(h.WaitFor([&] { return !h.unreachable_.empty(); }));
  // each failed dial is reported, and the next one waits the backoff on that clock: not a
  // moment less, whatever the real time, doubling from min_backoff up to max_backoff.
  for (absl::Duration backoff :
       {absl::Seconds(1), absl::Seconds(2), absl::Seconds(4), absl::Seconds(4)}) {
    const size_t before = failures();
    ASSERT_TRUE(clock.AwaitWaiter(clock.MonotonicNow() + backoff)) << backoff;
    clock.Advance(backoff - absl::Milliseconds(1));
    absl::SleepFor(absl::Milliseconds(100));  // real time: a dial would have failed by now
    EXPECT_EQ(failures(), before) << "dialed again before " << backoff;
    clock.Advance(absl::Milliseconds(1));
    ASSERT_TRUE(h.WaitFor([&] { return h.unreachable_.size() > before; })) << backoff;
    EXPECT_EQ(failures(), before + 1);
  }
  t.Stop();
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(GrpcTransportTest, SnapshotTravelsInCheckedChunksFromFileToFile) {
  const std::string dir1 = FreshTestDir() + "/1", dir2 = FreshTestDir() + "/2";
  std::filesystem::create_directories(dir1);
  std::filesystem::create_directories(dir2);
  RecordingHandler h1, h2;
  // Node 2 takes payloads whose first byte is not 'x' (its state machine's check).
  std::atomic<int> checked{0};
  auto t1 = StartTransport(1, dir1, &h1, 64 << 10);
  auto t2 = StartTransport(2, dir2, &h2, 64 << 10, [&](uint64_t shard, const SnapshotSource& in) {
    ++checked;
    std::string first;
    if (in.size() > 0 && in.ReadAt(0, 1, &first).ok() && first == "x") {
      return absl::InvalidArgumentError("starts with x");
    }
    return absl::OkStatus();
  });
  t1->SetPeerAddress(2, absl::StrCat("127.0.0.1:", t2->bound_port()));
  // Given the sender's payload in a file of its snapshots folder, named by the snapshot's data,
  std::string data;
  for (int i = 0; i < 300000; ++i) data.push_back(static_cast<char>(i * 7 + 1));
  { std::ofstream(dir1 + "/s42", std::ios::binary) << data; }
  v1::Message m = Msg(1, 2, 5, 0);
  m.set_type(v1::MSG_SNAP);
  m.mutable_snapshot()->mutable_metadata()->set_index(42);
  m.mutable_snapshot()->set_data("s42");
  // when it is sent (in chunks of 64 KiB: more than the 1 MiB message limit would not fit),
  t1->Send({m});
  // then the receiver holds the same bytes in a file of its own folder, checked, named by the
  // snapshot it got.
  ASSERT_TRUE(h2.WaitFor([&] { return h2.messages_.size() == 1; }));
  const std::string got = h2.Messages()[0].snapshot().data();
  EXPECT_NE(got, "s42");
  EXPECT_EQ(ReadFile(dir2 + "/" + got), data);
  EXPECT_EQ(h2.Messages()[0].snapshot().metadata().index(), 42u);
  EXPECT_EQ(checked.load(), 1);
  ASSERT_TRUE(h1.WaitFor([&] { return h1.snapshot_status_.size() == 1; }));
  EXPECT_TRUE(h1.SnapshotStatuses()[0].ok);
  EXPECT_EQ(h1.SnapshotStatuses()[0].shard, 5u);
  // A payload larger than one gRPC message (1 MiB here) still goes through, in chunks.
  { std::ofstream(dir1 + "/s43", std::ios::binary) << std::string(3 << 20, 'z'); }
  m.mutable_snapshot()->set_data("s43");
  t1->Send({m});
  ASSERT_TRUE(h2.WaitFor([&] { return h2.messages_.size() == 2; }));
  EXPECT_EQ(std::filesystem::file_size(dir2 + "/" + h2.Messages()[1].snapshot().data()), 3u << 20);
  // A payload the check refuses is not handed over, the sender learns it failed, and no file
  // of it is left; neither is one of a payload file that is gone.
  { std::ofstream(dir1 + "/s44", std::ios::binary) << "x and the rest"; }
  m.mutable_snapshot()->set_data("s44");
  t1->Send({m});
  m.mutable_snapshot()->set_data("gone");
  t1->Send({m});
  ASSERT_TRUE(h1.WaitFor([&] { return h1.snapshot_status_.size() == 4; }));
  EXPECT_FALSE(h1.SnapshotStatuses()[2].ok);
  EXPECT_FALSE(h1.SnapshotStatuses()[3].ok);
  EXPECT_EQ(h2.Messages().size(), 2u);
  int files = 0;
  for (const auto& f : std::filesystem::directory_iterator(dir2)) files += f.is_regular_file();
  EXPECT_EQ(files, 2);
  t1->Stop();
  t2->Stop();
}

TEST(GrpcTransportTest, MalformedInputIsDroppedNotFatal) {
  const std::string dir = FreshTestDir();
  RecordingHandler h;
  auto t = StartTransport(2, dir, &h);
  auto ch = grpc::CreateChannel(absl::StrCat("127.0.0.1:", t->bound_port()),
                                grpc::InsecureChannelCredentials());
  auto stub = tv1::RaftTransport::NewStub(ch);
  using Stream = grpc::ClientReaderWriter<tv1::MessageBatch, tv1::MessageBatch>;
  auto batch = [](uint64_t from, uint64_t to, std::vector<v1::Message> ms) {
    tv1::MessageBatch b;
    b.set_from_node(from);
    b.set_to_node(to);
    for (auto& m : ms) *b.add_messages() = m;
    return b;
  };
  // A stream addressed to another node, or dialed by the higher id of the pair, is refused.
  for (auto [from, to] : {std::pair<uint64_t, uint64_t>{1, 3}, {3, 2}}) {
    grpc::ClientContext ctx;
    std::unique_ptr<Stream> st = stub->Stream(&ctx);
    st->Write(batch(from, to, {Msg(from, to, 0, 1)}));
    st->WritesDone();
    EXPECT_FALSE(st->Finish().ok()) << from << "->" << to;
  }
  {
    // On a good stream, a batch claiming another sender is dropped, the rest delivered.
    grpc::ClientContext ctx;
    std::unique_ptr<Stream> st = stub->Stream(&ctx);
    EXPECT_TRUE(st->Write(batch(1, 2, {})));
    tv1::MessageBatch reply;  // the acceptor's handshake (no key here)
    EXPECT_TRUE(st->Read(&reply));
    EXPECT_TRUE(reply.has_handshake());
    EXPECT_TRUE(st->Write(batch(5, 2, {Msg(5, 2, 0, 1)})));
    EXPECT_TRUE(st->Write(batch(1, 2, {Msg(1, 2, 0, 2)})));
    st->WritesDone();
    while (st->Read(&reply)) {
    }
    EXPECT_TRUE(st->Finish().ok());
  }
  {
    // An oversized batch fails its call only.
    grpc::ClientContext ctx;
    std::unique_ptr<Stream> st = stub->Stream(&ctx);
    v1::Message m = Msg(1, 2, 0, 3);
    m.set_context(std::string(2 << 20, 'x'));  // over the 1 MiB limit
    st->Write(batch(1, 2, {m}));
    st->WritesDone();
    EXPECT_FALSE(st->Finish().ok());
  }
  auto bad_snapshot = [&](std::function<void(std::vector<tv1::SnapshotChunk>*)> spoil) {
    std::vector<tv1::SnapshotChunk> chunks(2);
    const std::string data = "0123456789abcdef";
    chunks[0].set_from_node(1);
    chunks[0].set_to_node(2);
    v1::Message header = Msg(1, 2, 0, 0);
    header.set_type(v1::MSG_SNAP);
    *chunks[0].mutable_header() = header;
    chunks[0].set_total_size(data.size());
    chunks[0].set_checksum(PayloadChecksum(kPayloadChecksumSeed, data.data(), data.size()));
    chunks[0].set_data(data.substr(0, 8));
    chunks[1].set_offset(8);
    chunks[1].set_data(data.substr(8));
    chunks[1].set_last(true);
    spoil(&chunks);
    grpc::ClientContext ctx;
    auto w = stub->SendSnapshot(&ctx);
    tv1::SnapshotAck challenge, ack;
    EXPECT_TRUE(w->Read(&challenge));
    EXPECT_TRUE(challenge.handshake().nonce().empty());  // no cluster key here
    for (auto& c : chunks) w->Write(c);
    w->WritesDone();
    const bool got = w->Read(&ack);
    grpc::Status st = w->Finish();
    return st.ok() && got && ack.ok();
  };
  EXPECT_TRUE(bad_snapshot([](auto*) {}));  // the unspoilt one is accepted
  EXPECT_FALSE(bad_snapshot([](auto* c) { (*c)[1].set_data("XXXXXXXX"); }));  // checksum
  EXPECT_FALSE(bad_snapshot([](auto* c) { (*c)[1].set_offset(9); }));         // gap
  EXPECT_FALSE(bad_snapshot([](auto* c) { c->pop_back(); }));                 // truncated
  EXPECT_FALSE(bad_snapshot([](auto* c) { (*c)[0].mutable_header()->set_type(v1::MSG_APP); }));
  EXPECT_FALSE(bad_snapshot([](auto* c) { (*c)[0].set_to_node(5); }));
  EXPECT_FALSE(bad_snapshot([](auto* c) { (*c)[0].set_total_size(uint64_t{1} << 40); }));
  EXPECT_FALSE(bad_snapshot([](auto* c) { (*c)[0].mutable_header()->set_shard(1u << 20); }));
  // Only the good batch message and the good snapshot reached the handler; no file is left but
  // the good snapshot's.
  ASSERT_TRUE(h.WaitFor([&] { return h.messages_.size() == 2; }));
  EXPECT_EQ(h.Messages()[0].index(), 2u);
  EXPECT_EQ(h.Messages()[1].type(), v1::MSG_SNAP);
  std::vector<std::string> files;
  for (const auto& f : std::filesystem::directory_iterator(dir)) {
    files.push_back(f.path().filename());
  }
  EXPECT_EQ(files, std::vector<std::string>{h.Messages()[1].snapshot().data()});
  t->Stop();
}

TEST(GrpcTransportTest, OneWayPartitionBlocksOnlyThatDirection) {
  const std::string dir = FreshTestDir();
  RecordingHandler h1, h2;
  auto t1 = StartTransport(1, dir, &h1);
  auto t2 = StartTransport(2, dir, &h2);
  t1->SetPeerAddress(2, absl::StrCat("127.0.0.1:", t2->bound_port()));
  t2->SetPeerAddress(1, absl::StrCat("127.0.0.1:", t1->bound_port()));
  // Node 1 dials; node 2 answers on the same stream.
  ASSERT_TRUE(WaitConnected(t1.get(), 1, 2, &h2));
  ASSERT_TRUE(WaitConnected(t2.get(), 2, 1, &h1));
  TransportFaults f;
  f.blocked = {2};
  t1->SetFaults(f);
  t1->Send({Msg(1, 2, 0, 1)});
  t2->Send({Msg(2, 1, 0, 1)});
  ASSERT_TRUE(h1.WaitFor([&] { return h1.messages_.size() == 1; }));
  EXPECT_FALSE(h2.WaitFor([&] { return !h2.messages_.empty(); }, absl::Milliseconds(300)));
  t1->SetFaults(TransportFaults());
  t1->Send({Msg(1, 2, 0, 2)});
  ASSERT_TRUE(h2.WaitFor([&] { return h2.messages_.size() == 1; }));
  EXPECT_EQ(h2.Messages()[0].index(), 2u);
  t1->Stop();
  t2->Stop();
}

TEST(GrpcTransportTest, MutualTlsConnectsAndRefusesPlaintext) {
  const std::string dir = FreshTestDir();
  // A throwaway CA and a certificate per node: 127.0.0.1 (where peers dial) and the node's id.
  std::string cmd = absl::StrCat(
      "cd ", dir, " && ",
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key "
      "-out ca.pem -days 1 -subj /CN=marmot-test-ca");
  for (int id : {1, 2}) {
    absl::StrAppend(
        &cmd,
        " && openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout node-", id,
        ".key -out node-", id, ".csr -subj /CN=node-", id,
        " && printf 'subjectAltName=IP:127.0.0.1,DNS:node-", id, ".marmot' > ext-", id,
        ".cnf && openssl x509 -req -in node-", id,
        ".csr -CA ca.pem -CAkey ca.key -CAcreateserial -out node-", id,
        ".pem -days 1 -extfile ext-", id, ".cnf");
  }
  absl::StrAppend(&cmd, " > openssl.log 2>&1");
  if (std::system(cmd.c_str()) != 0) GTEST_SKIP() << "openssl could not make test certificates";
  // `cert_of`: whose certificate the node presents.
  auto tls = [&](uint64_t id, uint64_t cert_of = 0) {
    GrpcTransportOptions o;
    o.node_id = id;
    o.bind_address = "127.0.0.1:0";
    o.snapshot_dir = dir;
    const std::string name = absl::StrCat(dir, "/node-", cert_of == 0 ? id : cert_of);
    o.tls_cert_file = name + ".pem";
    o.tls_key_file = name + ".key";
    o.tls_ca_file = dir + "/ca.pem";
    return std::make_unique<GrpcTransport>(o);
  };
  RecordingHandler h1, h2;
  auto t1 = tls(1);
  auto t2 = tls(2);
  ASSERT_TRUE(t1->Start(&h1).ok());
  ASSERT_TRUE(t2->Start(&h2).ok());
  t1->SetPeerAddress(2, absl::StrCat("127.0.0.1:", t2->bound_port()));
  ASSERT_TRUE(WaitConnected(t1.get(), 1, 2, &h2));
  t1->Send({Msg(1, 2, 3, 42)});
  ASSERT_TRUE(h2.WaitFor([&] { return !h2.messages_.empty(); }));
  EXPECT_EQ(h2.Messages()[0].index(), 42u);
  // A plaintext client gets nowhere.
  auto stub = tv1::RaftTransport::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", t2->bound_port()), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  auto st = stub->Stream(&ctx);
  tv1::MessageBatch b;
  b.set_from_node(1);
  b.set_to_node(2);
  *b.add_messages() = Msg(1, 2, 0, 7);
  st->Write(b);
  st->WritesDone();
  EXPECT_FALSE(st->Finish().ok());
  EXPECT_EQ(h2.Messages().size(), 1u);
  // A member holding node 2's certificate cannot speak as node 1, nor be dialed as node 3.
  {
    RecordingHandler h0, h3;
    auto impostor = tls(1, /*cert_of=*/2);
    ASSERT_TRUE(impostor->Start(&h0).ok());
    impostor->SetPeerAddress(2, absl::StrCat("127.0.0.1:", t2->bound_port()));
    auto t3 = tls(3, /*cert_of=*/2);
    ASSERT_TRUE(t3->Start(&h3).ok());
    t1->SetPeerAddress(3, absl::StrCat("127.0.0.1:", t3->bound_port()));
    const size_t before = h2.Messages().size();
    for (int i = 0; i < 10; ++i) {
      impostor->Send({Msg(1, 2, 0, 8)});
      t1->Send({Msg(1, 3, 0, 9)});
      absl::SleepFor(absl::Milliseconds(50));
    }
    EXPECT_EQ(h2.Messages().size(), before);
    EXPECT_TRUE(h3.Messages().empty());
    EXPECT_GE(t2->refusals().calls, 1u);
    impostor->Stop();
    t3->Stop();
  }
  // Half a TLS configuration is refused.
  GrpcTransportOptions half;
  half.node_id = 3;
  half.bind_address = "127.0.0.1:0";
  half.tls_cert_file = dir + "/node-1.pem";
  GrpcTransport t3(half);
  EXPECT_FALSE(t3.Start(&h1).ok());
  t1->Stop();
  t2->Stop();
}

}  // namespace
}  // namespace marmot::raft::host
