// Package jsonx reads and writes JSON without reflection or allocation,
// for the hot paths: the gateway's client bodies, the providers' upstream
// replies and stream chunks, the usage ledger's lines. Reading walks a
// value in place (iter.go: objects and arrays; value.go: strings and
// numbers; scan.go: validation, skipping, nesting bounds; fold.go:
// encoding/json's case-insensitive key matching), so a relayed delta costs
// nothing. It accepts exactly the JSON that encoding/json accepts (RFC
// 8259) and decodes strings the way it does (invalid UTF-8 and lone
// surrogates become U+FFFD); the fuzz tests hold it to that. Writing is
// one string encoder (encode.go), AppendString, which every package that
// writes JSON by hand uses, so there is one set of escaping rules.
//
// It imports nothing of the gateway's.
package jsonx
