<?php

namespace App\Http\Middleware;

use Illuminate\Cookie\Middleware\EncryptCookies as Middleware;

// As laravel/laravel ships it: every cookie is encrypted, the session
// cookie included.
class EncryptCookies extends Middleware
{
    protected $except = [];
}
