/*
** What the files of the C library share: errors handed to the caller.
*/
#ifndef AS_LIB_H
#define AS_LIB_H

#include "agentsession.h"
#include "../core/as_error.h"

/* Fills *err (when not NULL) from a core error; returns its status. */
agentsession_status as_lib_report(const as_error *e, agentsession_error *err);
/* Clears *err (when not NULL); returns AGENTSESSION_OK. */
agentsession_status as_lib_succeed(agentsession_error *err);

#endif
