// Package modbus is the Modbus TCP and RTU driver for the mapper SDK, on
// github.com/simonvetter/modbus.
//
// Protocol configData (KubeEdge's keys): TCP {ip, port, slaveID}; RTU
// {serialPort, baudRate, dataBits, parity, stopBits, slaveID}; the mode
// follows from ip or serialPort being present. Extensions: timeout
// (milliseconds per request, default 1000). Visitor configData (KubeEdge's
// keys): register (CoilRegister, DiscreteInputRegister, HoldingRegister,
// InputRegister), offset, limit, scale, isSwap (swap the two bytes of each
// register), isRegisterSwap (reverse the register order, for little-endian
// word order); extension: signed (INT values are two's complement).
//
// Values: registers are read as big-endian 16-bit words (Modbus order),
// then isRegisterSwap and isSwap are applied, then the bytes are read as the
// model's property type: INT as an unsigned (or signed) integer of limit
// registers (1, 2 or 4), FLOAT/DOUBLE as an IEEE float of 2 or 4 registers
// or as an integer of 1 register, BOOLEAN as non-zero, STRING as text with
// trailing NULs dropped, BYTES raw. Numbers are multiplied by scale on read
// and divided by it on write. Coils and discrete inputs read as BOOLEAN
// (limit 1) or as an INT of limit bits, lowest address first.
//
// Errors: Modbus exceptions (illegal data address...) are errors of the
// property; timeouts and I/O errors mark the device disconnected (the SDK
// reconnects). RTU devices on the same serial port share one port, one
// request at a time, so a silent slave only affects its own device.
package modbus
