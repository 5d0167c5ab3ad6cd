// Starting an httplib server's accept loop on its own thread, for the operator commands.
//
// httplib's Server::stop() does nothing until the accept loop runs, so a command that announces
// its port (a port file, a log line) before the loop starts can be told to stop and then wait on
// a loop that never ends: a SIGINT right after `edgefleet serve` wrote its port file hung it
// (ServeCli.SigintStopsWithExit0 under load). ListenInBackground returns only once the loop runs.
//
// Thread safety: call on the thread that owns `server`; the returned thread runs the loop.
#pragma once

#include <httplib.h>

#include <thread>

#include "manifests/result.hpp"

namespace edgefleet::deploy {

// Starts server.listen_after_bind() (bind first) on a new thread and waits up to 10 s for the
// accept loop to run. kInternal (the thread joined) when it ends or does not start in time.
Result<std::thread> ListenInBackground(httplib::Server& server);

}  // namespace edgefleet::deploy
