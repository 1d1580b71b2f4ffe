/* version.h — pgark's version and the repository format it writes. */
#ifndef PGARK_VERSION_H
#define PGARK_VERSION_H

#define PGARK_VERSION "0.1.0"
#define PGARK_REPO_FORMAT 1
/* The format of a repository that holds more than one data key (rotate-key --data-key):
 * objects under a later key have a version 2 envelope, which a pgark that reads format 1
 * only cannot read, and it would write new objects under the first key; so it refuses
 * the repository instead. */
#define PGARK_REPO_FORMAT_KEYS 2

#endif
