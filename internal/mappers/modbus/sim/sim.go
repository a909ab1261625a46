// Package sim is a simulated Modbus TCP thermostat for demos and the local
// try-out (`mapper simulate-modbus`), on simonvetter/modbus's TCP server.
// Tests of the Modbus mapper run against the libmodbus slave instead; this
// device is itself checked with mbpoll and the mapper.
//
// Registers (unit id ignored):
//
//	holding 0  temperature × 10 (°C), drifts toward the setpoint, read-only
//	holding 1  setpoint (°C), read-write
//	coil 0     heating: on while the temperature is below the setpoint
//	input 0    seconds since start
package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"sync"
	"time"

	mb "github.com/simonvetter/modbus"
	"k8s.io/utils/clock"
)

// Thermostat is the simulated device.
type Thermostat struct {
	clock clock.Clock
	start time.Time

	mu       sync.Mutex
	tenths   int // temperature in tenths of a degree; guarded by mu
	setpoint int // guarded by mu
	last     time.Time
}

// New returns a thermostat at 18.0 °C with setpoint 21 °C.
func New(c clock.Clock) *Thermostat {
	if c == nil {
		c = clock.RealClock{}
	}
	now := c.Now()
	return &Thermostat{clock: c, start: now, last: now, tenths: 180, setpoint: 21}
}

// step moves the temperature 0.1 °C per second toward the setpoint.
// Caller holds mu.
func (th *Thermostat) step() {
	now := th.clock.Now()
	n := int(now.Sub(th.last) / time.Second)
	if n <= 0 {
		return
	}
	th.last = th.last.Add(time.Duration(n) * time.Second)
	for range n {
		switch target := th.setpoint * 10; {
		case th.tenths < target:
			th.tenths++
		case th.tenths > target:
			th.tenths--
		}
	}
}

// HandleHoldingRegisters implements mb.RequestHandler.
func (th *Thermostat) HandleHoldingRegisters(req *mb.HoldingRegistersRequest) ([]uint16, error) {
	th.mu.Lock()
	defer th.mu.Unlock()
	th.step()
	if int(req.Addr)+int(req.Quantity) > 2 {
		return nil, mb.ErrIllegalDataAddress
	}
	if req.IsWrite {
		for i, v := range req.Args {
			if int(req.Addr)+i == 0 {
				return nil, mb.ErrIllegalDataAddress // the temperature is measured, not set
			}
			if v > 40 {
				return nil, mb.ErrIllegalDataValue
			}
			th.setpoint = int(v)
		}
		return nil, nil
	}
	regs := []uint16{uint16(th.tenths), uint16(th.setpoint)}
	return regs[req.Addr : req.Addr+req.Quantity], nil
}

// HandleCoils implements mb.RequestHandler.
func (th *Thermostat) HandleCoils(req *mb.CoilsRequest) ([]bool, error) {
	th.mu.Lock()
	defer th.mu.Unlock()
	th.step()
	if req.IsWrite || req.Addr != 0 || req.Quantity != 1 {
		return nil, mb.ErrIllegalDataAddress
	}
	return []bool{th.tenths < th.setpoint*10}, nil
}

// HandleDiscreteInputs implements mb.RequestHandler.
func (th *Thermostat) HandleDiscreteInputs(*mb.DiscreteInputsRequest) ([]bool, error) {
	return nil, mb.ErrIllegalFunction
}

// HandleInputRegisters implements mb.RequestHandler.
func (th *Thermostat) HandleInputRegisters(req *mb.InputRegistersRequest) ([]uint16, error) {
	if req.Addr != 0 || req.Quantity != 1 {
		return nil, mb.ErrIllegalDataAddress
	}
	return []uint16{uint16(th.clock.Since(th.start) / time.Second)}, nil
}

// Serve listens on addr (host:port) until ctx is done.
func Serve(ctx context.Context, addr string, th *Thermostat) error {
	srv, err := mb.NewServer(&mb.ServerConfiguration{URL: "tcp://" + addr, Timeout: 5 * time.Minute, MaxClients: 64,
		Logger: log.New(io.Discard, "", 0)}, th)
	if err != nil {
		return fmt.Errorf("modbus simulator: %w", err)
	}
	if err := srv.Start(); err != nil {
		return fmt.Errorf("modbus simulator: listen %s: %w", addr, err)
	}
	<-ctx.Done()
	if err := srv.Stop(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("modbus simulator: stop: %w", err)
	}
	return nil
}
