// LinkProxy: a TCP forwarder on loopback that stands between two marmot nodes, so a chaos run
// can cut the link between them without touching the processes.
//
// Marmot's transport keeps ONE gRPC connection per pair of nodes, dialed by the lower id. The
// chaos cluster gives the dialer the proxy's address for the peer, so every byte between the
// pair crosses this proxy. Modes:
//   kPass     forward both ways.
//   kBlocked  a full partition: live connections are closed, new ones are accepted and closed
//             at once (the dialer sees a broken connection and backs off).
//   kStallForward / kStallBackward  a one-way partition: bytes from the dialer to the peer
//             (forward) or back (backward) are held, the other direction still flows. One TCP
//             connection carries HTTP/2 both ways, so once its flow-control window fills the
//             open direction stalls too; what the one-way mode proves is that nodes survive an
//             asymmetric link and converge after it heals (in-process transport tests cover a
//             pure message-level one-way partition: raft/host and tests/host).
#ifndef MARMOT_TESTS_CHAOS_LINK_PROXY_H_
#define MARMOT_TESTS_CHAOS_LINK_PROXY_H_

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

namespace marmot::chaos {

enum class LinkMode { kPass, kBlocked, kStallForward, kStallBackward };

class LinkProxy {
 public:
  // Listens on 127.0.0.1 at a free port and forwards to 127.0.0.1:`target_port`.
  explicit LinkProxy(int target_port);
  // Closes every connection and stops the threads.
  ~LinkProxy();
  LinkProxy(const LinkProxy&) = delete;
  LinkProxy& operator=(const LinkProxy&) = delete;

  int port() const { return port_; }
  void SetMode(LinkMode mode);
  LinkMode mode() const { return mode_.load(); }

 private:
  void AcceptLoop();
  void Pump(int client, int server);

  const int target_port_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<LinkMode> mode_{LinkMode::kPass};
  // Bumped by SetMode(kBlocked): pumps of an older epoch close their sockets.
  std::atomic<uint64_t> block_epoch_{0};
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<std::thread> pumps_;
};

}  // namespace marmot::chaos

#endif  // MARMOT_TESTS_CHAOS_LINK_PROXY_H_
