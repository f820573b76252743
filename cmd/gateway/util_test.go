package main

import (
	"bufio"
	"io"

	"github.com/moonborn/edge/policy"
)

func hashOf(key string) string { return policy.HashKey(key) }

func bufioReader(r io.Reader) *bufio.Reader { return bufio.NewReader(r) }
