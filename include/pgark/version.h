/* version.h — pgark's version and the repository format it writes. */
#ifndef PGARK_VERSION_H
#define PGARK_VERSION_H

#define PGARK_VERSION "0.1.0"
#define PGARK_REPO_FORMAT 1

#endif
