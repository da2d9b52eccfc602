module k2.dev/k2

go 1.26
