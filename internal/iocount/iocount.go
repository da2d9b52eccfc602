// Package iocount counts the bytes that pass through a writer.
package iocount

import "io"

// Writer writes to W and counts in N the bytes W accepted.
type Writer struct {
	W io.Writer
	N int64
}

// Write writes p to W and adds what W took to N.
func (c *Writer) Write(p []byte) (int, error) {
	n, err := c.W.Write(p)
	c.N += int64(n)
	return n, err
}
