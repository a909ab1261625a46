// Package devicepeers starts the real device and broker peers the mapper
// tests talk to, each on 127.0.0.1 or a pty, each stopped by PID when its
// test ends: a libmodbus slave (compiled from modbus_slave.c with gcc, over
// TCP or over RTU on a socat pty pair), a node-opcua server (npm-installed
// once into _output/npm), Mosquitto, and a private dbus-daemon for the
// simulated BlueZ. Missing tools are reported through testenv.Require, so
// the tests skip with the reason locally and fail in CI
// (KUBEEDGE_REQUIRE_ALL=1). hack/install-deps.sh installs the Debian
// packages; builds and npm installs are cached under _output/devicepeers and
// _output/npm.
package devicepeers
