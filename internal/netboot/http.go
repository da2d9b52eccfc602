package netboot

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

func (s *Server) handler() http.Handler {
	mux := http.NewServeMux()
	// What iPXE fetches first (the DHCP filename for user class iPXE): it
	// chains to the script of the MAC it booted from.
	mux.HandleFunc("GET /boot.ipxe", func(w http.ResponseWriter, r *http.Request) {
		body := "#!ipxe\nchain " + s.URL() + "/m/${mac:hexhyp}/boot.ipxe\n"
		n, _ := io.WriteString(w, body)
		s.record(Event{Remote: r.RemoteAddr, Proto: "http", Path: r.URL.Path, Bytes: int64(n), At: time.Now()})
	})
	mux.HandleFunc("GET /m/{mac}/{file}", s.serveMachine)
	mux.HandleFunc("GET /c/{token}", s.serveConfig)
	return mux
}

func (s *Server) serveMachine(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	mac := normMAC(r.PathValue("mac"))
	ev := Event{MAC: mac, Remote: r.RemoteAddr, Proto: "http", Path: r.URL.Path, At: start}
	s.mu.Lock()
	e, ok := s.machines[mac]
	var m Machine
	var token string
	if ok {
		m, token = e.m, e.token
	}
	s.mu.Unlock()
	if !ok {
		ev.Err = ErrUnknownMachine.Error()
		s.record(ev)
		http.Error(w, "this server does not boot "+r.PathValue("mac"), http.StatusNotFound)
		return
	}
	var path string
	switch r.PathValue("file") {
	case "boot.ipxe":
		ev.Stage = StageScript
		base := s.URL() + "/m/" + strings.ReplaceAll(mac, ":", "-")
		cmdline := m.Cmdline
		if token != "" {
			cmdline = strings.TrimSpace(cmdline + " " + m.ConfigParam + "=" + s.URL() + "/c/" + token)
		}
		kernel, initrd := base+"/kernel", base+"/initrd"
		if isURL(m.Kernel) {
			kernel = m.Kernel // the site's mirror serves it
		}
		if isURL(m.Initramfs) {
			initrd = m.Initramfs
		}
		script := fmt.Sprintf("#!ipxe\necho k2: booting %s\nkernel %s initrd=initrd %s\ninitrd --name initrd %s\nboot\n", m.Name, kernel, cmdline, initrd)
		n, _ := io.WriteString(w, script)
		ev.Bytes, ev.Took = int64(n), time.Since(start)
		s.record(ev)
		return
	case "kernel":
		ev.Stage, path = StageKernel, m.Kernel
	case "initrd":
		ev.Stage, path = StageInitramfs, m.Initramfs
	default:
		ev.Err = "no such file"
		s.record(ev)
		http.NotFound(w, r)
		return
	}
	f, err := os.Open(path)
	if err != nil {
		ev.Err = err.Error()
		s.record(ev)
		http.Error(w, "boot file missing on the boot server", http.StatusInternalServerError)
		return
	}
	defer f.Close()
	st, _ := f.Stat()
	cw := &countWriter{w: w}
	http.ServeContent(cw, r, "", st.ModTime(), f)
	ev.Bytes, ev.Took = cw.n, time.Since(start)
	if r.Method == http.MethodHead || cw.n < st.Size() && r.Header.Get("Range") == "" {
		ev.Stage = "" // an aborted or partial download is not the stage
	}
	s.record(ev)
}

// serveConfig serves a machine's config once: the URL is unguessable and
// a second request gets 410 Gone.
func (s *Server) serveConfig(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	tok := r.PathValue("token")
	ev := Event{Remote: r.RemoteAddr, Proto: "http", Path: "/c/…", At: start}
	s.mu.Lock()
	mac, ok := s.tokens[tok]
	var cfg []byte
	if ok {
		e := s.machines[mac]
		cfg, e.served = e.m.Config, true
		delete(s.tokens, tok)
	}
	s.mu.Unlock()
	ev.MAC = mac
	if !ok {
		ev.Err = "unknown or used config token"
		s.record(ev)
		http.Error(w, "no such config (each config URL works once)", http.StatusGone)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Cache-Control", "no-store")
	n, err := w.Write(cfg)
	ev.Stage, ev.Bytes, ev.Took = StageConfig, int64(n), time.Since(start)
	if err != nil {
		ev.Err = err.Error()
	}
	s.record(ev)
}

func isURL(s string) bool { return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://") }

type countWriter struct {
	w http.ResponseWriter
	n int64
}

func (c *countWriter) Header() http.Header  { return c.w.Header() }
func (c *countWriter) WriteHeader(code int) { c.w.WriteHeader(code) }
func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}
