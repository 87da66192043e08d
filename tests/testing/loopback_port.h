#ifndef MARMOT_TESTS_TESTING_LOOPBACK_PORT_H_
#define MARMOT_TESTS_TESTING_LOOPBACK_PORT_H_

#include <netinet/in.h>

namespace marmot::testing {

// 127.0.0.1:`port` (0: any port) as a socket address.
sockaddr_in LoopbackAddress(int port);

// A TCP port on 127.0.0.1 that is free now and stays reserved for this process: never handed out
// twice, in this process or in another test process running at the same time (the reservation is
// an abstract unix socket held until the process exits). It lies outside the kernel's ephemeral
// range, so while a node is down no outgoing connection on the machine can take its port as a
// source port (which would make the node's restart fail with "address in use", and lets a peer's
// reconnect attempts connect to themselves).
int FreeLoopbackPort();

}  // namespace marmot::testing

#endif  // MARMOT_TESTS_TESTING_LOOPBACK_PORT_H_
