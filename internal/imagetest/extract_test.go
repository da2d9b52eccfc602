package imagetest_test

import (
	"archive/tar"
	"fmt"
	"io"
	"os"
)

// extractOne writes the tar entry name to path, executable.
func extractOne(r io.Reader, name, path string) error {
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err != nil {
			return fmt.Errorf("%s not in layer: %w", name, err)
		}
		if hdr.Name != name {
			continue
		}
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o755)
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, tr); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
}
