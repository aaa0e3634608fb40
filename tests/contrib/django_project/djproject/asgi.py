"""The project's ASGI application, with the errands dashboard under /admin/errands/."""

import os

from django.core.asgi import get_asgi_application

from errands.contrib.django.dashboard import admin_dashboard

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djproject.settings")

application = admin_dashboard(get_asgi_application())
