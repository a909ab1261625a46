// Package ble is the Bluetooth LE (GATT) driver for the mapper SDK. It
// talks to BlueZ over D-Bus (the system bus, or DBUS_SYSTEM_BUS_ADDRESS)
// with github.com/godbus/dbus/v5 directly: tinygo.org/x/bluetooth's Linux
// backend is the same BlueZ API behind a package-global adapter on a shared
// process-wide bus connection, with no contexts or timeouts, which does not
// fit one connection per device with clean shutdown.
//
// Protocol configData: macAddress (required, AA:BB:CC:DD:EE:FF), adapter
// (default hci0), timeout (milliseconds for discovery, connect and each
// GATT operation, default 10000).
//
// Visitor configData: characteristicUUID (required), serviceUUID (optional,
// when several services carry the characteristic), notify (bool: collect
// by notifications instead of reads), writeType (request or command, i.e.
// write with or without response; default request), and the data
// conversion: dataFormat (raw, utf8, uint8, int8, uint16le, uint16be,
// int16le, int16be, uint32le, uint32be, int32le, int32be, float32le,
// float32be, float64le, float64be; default raw for BYTES, utf8 for STRING,
// uint8 for INT and BOOLEAN, float32le for FLOAT and DOUBLE), offset (first
// byte of the value in the characteristic, default 0) and scale (default 1).
//
// Tests run against a simulated BlueZ (internal/testenv/devicepeers) on a
// private dbus-daemon, because this kernel has no Bluetooth; tests with a
// real adapter need hardware and skip without it.
package ble
