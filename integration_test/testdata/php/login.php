<?php
// Logs a user in the way PHP's manual asks for: a new session ID on a change
// of privilege, deleting the old session at once (session_regenerate_id(true)).
// Requests of the old ID that are still queued then find their session gone;
// this is the backend for the ID-regeneration tests.
require __DIR__ . '/lib.php';

session_start();
usleep(sq_ms(0) * 1000); // checking the password; ?ms= lets requests queue behind it
session_regenerate_id(true);
$_SESSION['user'] = sq_name('user') ?: 'alice';
echo session_id(), "\n";
