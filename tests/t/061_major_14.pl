# The version matrix on PostgreSQL 14 (tests/t/lib/PgarkMatrix.pm says what it covers);
# skipped unless 14 is in PGARK_TEST_MAJORS (default: every supported major).
use strict;
use warnings;

use PgarkMatrix;

major_scenario(14);
