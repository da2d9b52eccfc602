package osinit

import (
	"context"
	"encoding/binary"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// Input event codes (linux/input-event-codes.h).
const (
	evKey    = 0x01
	keyPower = 116
)

// power turns the ACPI power button and signals into shutdown requests:
// the power button, SIGUSR2 and SIGPWR power off; SIGTERM and SIGINT
// (Ctrl-Alt-Del) reboot, as other inits do.
type power struct {
	m    *machine
	sigs chan os.Signal
}

func (p *power) Name() string               { return "power" }
func (p *power) Init(context.Context) error { return nil }
func (p *power) Start(context.Context) error {
	p.sigs = make(chan os.Signal, 4)
	signal.Notify(p.sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR2, syscall.SIGPWR)
	return nil
}
func (p *power) Stop(context.Context) error { signal.Stop(p.sigs); return nil }

func (p *power) Run(ctx context.Context) error {
	r := p.m.r
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case s := <-p.sigs:
				switch s {
				case syscall.SIGUSR2, syscall.SIGPWR:
					r.log.Info("signal: powering off", "signal", s.String())
					r.requestShutdown(ActionPowerOff)
				default:
					r.log.Info("signal: rebooting", "signal", s.String())
					r.requestShutdown(ActionReboot)
				}
			}
		}
	})
	// The button's input device appears once the button module loaded.
	for deadline := time.Now().Add(30 * time.Second); ; {
		if devs := powerButtons(); len(devs) > 0 {
			for _, d := range devs {
				g.Go(func() error { p.readButton(ctx, d); return nil })
			}
			break
		}
		if time.Now().After(deadline) {
			r.log.Warn("no ACPI power button found: power off with 'k2 init poweroff' or SIGUSR2")
			break
		}
		select {
		case <-ctx.Done():
			return g.Wait()
		case <-time.After(time.Second):
		}
	}
	return g.Wait()
}

// powerButtons are the /dev/input/event* devices named "Power Button".
func powerButtons() []string {
	names, _ := filepath.Glob("/sys/class/input/event*/device/name")
	var out []string
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err == nil && strings.Contains(string(b), "Power Button") {
			out = append(out, filepath.Join("/dev/input", filepath.Base(filepath.Dir(filepath.Dir(n)))))
		}
	}
	return out
}

// readButton reads input events (struct input_event: a timeval, then type,
// code and value) until a press of KEY_POWER.
func (p *power) readButton(ctx context.Context, dev string) {
	m := p.m
	f, err := os.Open(dev)
	if err != nil {
		m.r.log.Warn("opening the power button", "device", dev, "err", err)
		return
	}
	defer f.Close()
	stop := context.AfterFunc(ctx, func() { f.Close() }) // ends the blocked Read
	defer stop()
	m.r.log.Info("watching the power button", "device", dev)
	ev := make([]byte, 24)
	for {
		if _, err := f.Read(ev); err != nil {
			return
		}
		typ, code, val := binary.LittleEndian.Uint16(ev[16:]), binary.LittleEndian.Uint16(ev[18:]), int32(binary.LittleEndian.Uint32(ev[20:]))
		if typ == evKey && code == keyPower && val == 1 {
			m.r.log.Info("power button pressed: powering off")
			m.r.requestShutdown(ActionPowerOff)
		}
	}
}

// finish ends the machine's life once k2 init's components stopped: every
// other process is stopped, the disks synced, then the machine powers off
// or reboots.
func (m *machine) finish(action string) {
	log := m.r.log
	log.Info("shutting down", "action", action)
	killOthers()
	m.unmountDataDisk() // if a failed start left it mounted
	unix.Sync()
	cmd := unix.LINUX_REBOOT_CMD_POWER_OFF
	if action == ActionReboot {
		cmd = unix.LINUX_REBOOT_CMD_RESTART
	}
	log.Info("disks synced; " + action)
	if err := unix.Reboot(cmd); err != nil {
		log.Error("reboot(2)", "err", err)
	}
	for {
		time.Sleep(time.Hour)
	}
}

// killOthers sends every process but k2 init SIGTERM, then SIGKILL to
// those left after 5 s.
func killOthers() {
	unix.Kill(-1, unix.SIGTERM)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && othersRunning(); {
		time.Sleep(100 * time.Millisecond)
	}
	unix.Kill(-1, unix.SIGKILL)
	time.Sleep(200 * time.Millisecond)
}

// othersRunning reports whether any process but PID 1 and kernel threads
// is left.
func othersRunning() bool {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid := e.Name()
		if pid == "1" || pid[0] < '0' || pid[0] > '9' {
			continue
		}
		if b, err := os.ReadFile("/proc/" + pid + "/cmdline"); err == nil && len(b) > 0 {
			return true
		}
	}
	return false
}
