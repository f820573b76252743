package main

import (
	"github.com/moonborn/edge/policy"
)

func hashOf(key string) string { return policy.HashKey(key) }
