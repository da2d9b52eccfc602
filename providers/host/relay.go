package host

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
)

// lineLogger turns a plugin's stderr into log records: JSON lines (slog or
// hclog) keep their level, message and attributes; other lines are logged
// as they are at info level.
type lineLogger struct {
	logger *slog.Logger
	mu     sync.Mutex
	buf    []byte
}

func (w *lineLogger) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.log(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > 64<<10 { // a runaway line without newline
		w.log(string(w.buf))
		w.buf = nil
	}
	return len(p), nil
}

func (w *lineLogger) log(line string) {
	line = strings.TrimRight(line, "\r")
	if strings.TrimSpace(line) == "" {
		return
	}
	var m map[string]any
	if !strings.HasPrefix(line, "{") || json.Unmarshal([]byte(line), &m) != nil {
		w.logger.Info(line)
		return
	}
	level := slog.LevelInfo
	lv, _ := m["level"].(string)
	if lv == "" {
		lv, _ = m["@level"].(string)
	}
	switch strings.ToLower(lv) {
	case "debug", "trace":
		level = slog.LevelDebug
	case "warn", "warning":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	msg, _ := m["msg"].(string)
	if msg == "" {
		msg, _ = m["@message"].(string)
	}
	var attrs []any
	for k, v := range m {
		switch k {
		case "time", "level", "msg", "@timestamp", "@level", "@message", "@module":
			continue
		}
		attrs = append(attrs, k, v)
	}
	w.logger.Log(context.Background(), level, msg, attrs...)
}
