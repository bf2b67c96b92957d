// Clean shutdown on SIGTERM and SIGINT for the daemons.
//
// BlockTerminationSignals() runs first in main(), before any thread starts,
// so every thread inherits the mask and the signal is only ever taken by
// WaitForTerminationSignal() on the main thread: no async-signal-safety
// puzzles in the rest of the code.
#pragma once

namespace shardfs {

void BlockTerminationSignals();
// Blocks until SIGTERM or SIGINT arrives; returns the signal number.
int WaitForTerminationSignal();

}  // namespace shardfs
