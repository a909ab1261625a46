package modbus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"strconv"
	"sync"

	mb "github.com/simonvetter/modbus"

	"github.com/kubeedge-go/kubeedge/pkg/mapper"
)

// Protocol is the protocolName this driver serves.
const Protocol = "modbus"

// Driver implements mapper.Driver for Modbus TCP and RTU.
type Driver struct {
	mu    sync.Mutex
	buses map[string]*bus // open RTU ports by path; guarded by mu
}

// New returns a Modbus driver.
func New() *Driver { return &Driver{buses: map[string]*bus{}} }

var _ mapper.Driver = (*Driver)(nil)

// NewDevice implements mapper.Driver.
func (d *Driver) NewDevice(spec mapper.DeviceSpec) (mapper.Device, error) {
	p, err := parseProtocol(spec)
	if err != nil {
		return nil, err
	}
	return &device{drv: d, cfg: p}, nil
}

// ParseVisitor implements mapper.Driver.
func (d *Driver) ParseVisitor(p mapper.PropertySpec) (mapper.Visitor, error) {
	return parseVisitor(p)
}

// bus is one Modbus client: a TCP connection of one device, or an RTU
// serial port shared by the devices on it. mu serialises requests, since
// the unit id is set per request.
type bus struct {
	mu     sync.Mutex
	client *mb.ModbusClient
	refs   int // devices using it (RTU); guarded by Driver.mu
	key    string
}

// quietLogger drops the client library's own log lines; errors reach the
// SDK as return values.
var quietLogger = log.New(io.Discard, "", 0)

func openClient(p protocolConfig) (*mb.ModbusClient, error) {
	conf := &mb.ClientConfiguration{Timeout: p.timeout, Logger: quietLogger}
	if p.rtu {
		conf.URL = "rtu://" + p.serial
		conf.Speed, conf.DataBits, conf.StopBits = uint(p.baud), uint(p.data), uint(p.stop)
		switch p.parity {
		case "E":
			conf.Parity = mb.PARITY_EVEN
		case "O":
			conf.Parity = mb.PARITY_ODD
		default:
			conf.Parity = mb.PARITY_NONE
		}
	} else {
		conf.URL = "tcp://" + p.ip + ":" + strconv.Itoa(p.port)
	}
	c, err := mb.NewClient(conf)
	if err != nil {
		return nil, fmt.Errorf("modbus %s: %w", conf.URL, err)
	}
	if err := c.Open(); err != nil {
		return nil, fmt.Errorf("modbus %s: open: %w", conf.URL, err)
	}
	return c, nil
}

// acquire opens (or shares, for RTU) the bus of a device.
func (d *Driver) acquire(p protocolConfig) (*bus, error) {
	if !p.rtu {
		c, err := openClient(p)
		if err != nil {
			return nil, err
		}
		return &bus{client: c}, nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if b, ok := d.buses[p.serial]; ok {
		b.refs++
		return b, nil
	}
	c, err := openClient(p)
	if err != nil {
		return nil, err
	}
	b := &bus{client: c, refs: 1, key: p.serial}
	d.buses[p.serial] = b
	return b, nil
}

// release closes a bus when its last device lets go.
func (d *Driver) release(b *bus) error {
	if b.key == "" {
		return b.client.Close()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	b.refs--
	if b.refs > 0 {
		return nil
	}
	delete(d.buses, b.key)
	return b.client.Close()
}

// device is one Modbus slave.
type device struct {
	drv *Driver
	cfg protocolConfig
	bus *bus // nil while disconnected
}

var _ mapper.Device = (*device)(nil)

func (dv *device) target() string {
	if dv.cfg.rtu {
		return fmt.Sprintf("rtu %s slave %d", dv.cfg.serial, dv.cfg.slaveID)
	}
	return fmt.Sprintf("tcp %s:%d slave %d", dv.cfg.ip, dv.cfg.port, dv.cfg.slaveID)
}

func (dv *device) Connect(context.Context) error {
	if dv.bus != nil {
		return nil
	}
	b, err := dv.drv.acquire(dv.cfg)
	if err != nil {
		return err
	}
	dv.bus = b
	return nil
}

func (dv *device) Close() error {
	if dv.bus == nil {
		return nil
	}
	b := dv.bus
	dv.bus = nil
	return dv.drv.release(b)
}

// exceptions are the errors a slave answered with: the link works, the
// request does not.
var exceptions = []error{
	mb.ErrIllegalFunction, mb.ErrIllegalDataAddress, mb.ErrIllegalDataValue, mb.ErrServerDeviceFailure,
	mb.ErrAcknowledge, mb.ErrServerDeviceBusy, mb.ErrMemoryParityError, mb.ErrGWPathUnavailable, mb.ErrGWTargetFailedToRespond,
}

// classify wraps an error: exceptions stay property errors, anything else
// (timeouts, I/O, framing) is a lost connection.
func (dv *device) classify(op string, v visitor, err error) error {
	for _, ex := range exceptions {
		if errors.Is(err, ex) {
			return fmt.Errorf("modbus %s: %s %s: exception: %w", dv.target(), op, v, err)
		}
	}
	if errors.Is(err, mb.ErrRequestTimedOut) {
		return fmt.Errorf("modbus %s: %s %s: no answer within %v: %w: %w", dv.target(), op, v, dv.cfg.timeout, mapper.ErrDisconnected, err)
	}
	return fmt.Errorf("modbus %s: %s %s: %w: %w", dv.target(), op, v, mapper.ErrDisconnected, err)
}

func (dv *device) Read(_ context.Context, vis mapper.Visitor) (any, error) {
	v := vis.(visitor)
	if dv.bus == nil {
		return nil, fmt.Errorf("modbus %s: %w", dv.target(), mapper.ErrDisconnected)
	}
	b := dv.bus
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.client.SetUnitId(uint8(dv.cfg.slaveID)); err != nil {
		return nil, dv.classify("read", v, err)
	}
	switch v.register {
	case Coil, DiscreteInput:
		var bits []bool
		var err error
		if v.register == Coil {
			bits, err = b.client.ReadCoils(v.offset, v.limit)
		} else {
			bits, err = b.client.ReadDiscreteInputs(v.offset, v.limit)
		}
		if err != nil {
			return nil, dv.classify("read", v, err)
		}
		return v.decodeBits(bits)
	default:
		rt := mb.HOLDING_REGISTER
		if v.register == Input {
			rt = mb.INPUT_REGISTER
		}
		regs, err := b.client.ReadRegisters(v.offset, v.limit, rt)
		if err != nil {
			return nil, dv.classify("read", v, err)
		}
		return v.decodeRegisters(regs)
	}
}

func (dv *device) Write(_ context.Context, vis mapper.Visitor, value any) error {
	v := vis.(visitor)
	if v.register == Input || v.register == DiscreteInput {
		return fmt.Errorf("modbus %s: write %s: %w (only coils and holding registers can be written)", dv.target(), v, ErrReadOnly)
	}
	if dv.bus == nil {
		return fmt.Errorf("modbus %s: %w", dv.target(), mapper.ErrDisconnected)
	}
	b := dv.bus
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.client.SetUnitId(uint8(dv.cfg.slaveID)); err != nil {
		return dv.classify("write", v, err)
	}
	if v.register == Coil {
		bits, err := v.encodeBits(value)
		if err != nil {
			return err
		}
		if len(bits) == 1 {
			err = b.client.WriteCoil(v.offset, bits[0])
		} else {
			err = b.client.WriteCoils(v.offset, bits)
		}
		if err != nil {
			return dv.classify("write", v, err)
		}
		return nil
	}
	regs, err := v.encodeRegisters(value)
	if err != nil {
		return err
	}
	if len(regs) == 1 {
		err = b.client.WriteRegister(v.offset, regs[0])
	} else {
		err = b.client.WriteRegisters(v.offset, regs)
	}
	if err != nil {
		return dv.classify("write", v, err)
	}
	return nil
}
