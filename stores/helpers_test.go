package stores_test

import (
	"crypto/sha256"

	"github.com/dualstore/dualstore/stores"
)

// id returns the id the tests (and storetest) give data.
func id(data string) stores.ID { return sha256.Sum256([]byte(data)) }
