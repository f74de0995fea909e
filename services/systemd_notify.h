// Readiness notification for systemd's Type=notify services: the
// sd_notify(3) protocol (one datagram of "KEY=VALUE" lines to the socket
// named by $NOTIFY_SOCKET), without linking libsystemd.
#ifndef HAWIYA_SERVICES_SYSTEMD_NOTIFY_H_
#define HAWIYA_SERVICES_SYSTEMD_NOTIFY_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace hawiya::services {

// Sends `state` (e.g. "READY=1\nSTATUS=serving") to $NOTIFY_SOCKET: a path,
// or an abstract socket name written with a leading '@'. Does nothing and
// returns OK when NOTIFY_SOCKET is unset (not started by systemd).
absl::Status NotifySystemd(absl::string_view state);

}  // namespace hawiya::services

#endif  // HAWIYA_SERVICES_SYSTEMD_NOTIFY_H_
