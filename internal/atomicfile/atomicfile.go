// Package atomicfile writes files so that a crash leaves either the old
// contents or the new, never half of them.
package atomicfile

import "os"

// Write writes data to path through a temporary file beside it, which gets
// mode (even if a stale one existed) and is then renamed over path.
func Write(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
