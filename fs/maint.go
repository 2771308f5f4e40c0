package fs

import (
	"github.com/dualstore/dualstore/dual"
	"github.com/dualstore/dualstore/dual/maint"
	"github.com/dualstore/dualstore/index"
)

// Maintenance is the maintenance of package dual/maint, the same code the
// offline CLI runs; `.dualstore/ctl` starts its runs.
type Maintenance = maint.Maintenance

// NewMaintenance returns maint.New(db, dm).
func NewMaintenance(db *index.DB, dm *dual.Manager) *Maintenance { return maint.New(db, dm) }
