<?php
// Laravel's front controller, as in laravel/laravel 8, with Debian's
// php-laravel-framework in place of Composer's vendor/autoload.php.
use Illuminate\Contracts\Http\Kernel;
use Illuminate\Http\Request;

define('LARAVEL_START', microtime(true));

require_once 'Illuminate/autoload.php';

$app = require_once __DIR__ . '/../bootstrap/app.php';

$kernel = $app->make(Kernel::class);

$response = $kernel->handle(
    $request = Request::capture()
)->send();

$kernel->terminate($request, $response);
