"""HTTP endpoints of alerting: channels (and their deliveries), incidents, silences."""
from django.db.models import Q
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from anomalies import alerting, selectors, serializers
from anomalies.views import api_actor
from cloudwatchdog.api import MAX_ID, cursor_id, cursor_time, keyset_page, query_params
from cloudwatchdog.errors import ApiError
from cloudwatchdog.timeutil import to_us


def _channel_or_404(tenant, channel_id: int):
    channel = selectors.channel_get(tenant=tenant, channel_id=channel_id) if channel_id <= MAX_ID else None
    if channel is None:
        raise ApiError(404, "No such channel.")
    return channel


class ChannelListView(APIView):
    @extend_schema(operation_id="channels_list", summary="List notification channels",
                   responses=serializers.ChannelPageSerializer)
    def get(self, request):
        """The tenant's notification channels."""
        channels = selectors.channel_list(tenant=request.user.tenant)
        return Response(serializers.ChannelPageSerializer({"results": channels}).data)

    @extend_schema(operation_id="channel_create", summary="Create a notification channel",
                   request=serializers.ChannelWriteSerializer,
                   responses={201: serializers.ChannelSerializer})
    def post(self, request):
        """A webhook, Slack or email channel; a webhook's signing secret is in this answer only (scope all)."""
        data = serializers.ChannelWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        channel = alerting.channel_create(tenant=request.user.tenant, data=data.validated_data)
        return Response(serializers.ChannelSerializer(channel, context={"show_secret": True}).data,
                        status=status.HTTP_201_CREATED)


class ChannelDetailView(APIView):
    @extend_schema(operation_id="channel_read", summary="Read a notification channel",
                   responses=serializers.ChannelSerializer)
    def get(self, request, channel_id):
        """One channel: its kind, target and whether it is enabled (a webhook's secret is never shown again)."""
        return Response(serializers.ChannelSerializer(_channel_or_404(request.user.tenant, channel_id)).data)

    @extend_schema(operation_id="channel_update", summary="Change a notification channel",
                   request=serializers.ChannelWriteSerializer,
                   responses=serializers.ChannelSerializer)
    def patch(self, request, channel_id):
        """Change a channel (not its kind)."""
        channel = _channel_or_404(request.user.tenant, channel_id)
        data = serializers.ChannelWriteSerializer(channel, data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        channel = alerting.channel_update(channel=channel, data=data.validated_data)
        return Response(serializers.ChannelSerializer(channel).data)

    @extend_schema(operation_id="channel_delete", summary="Delete a notification channel",
                   responses={204: OpenApiResponse(description="Deleted.")})
    def delete(self, request, channel_id):
        """Delete a channel with its notifications and their delivery history (scope all)."""
        alerting.channel_delete(channel=_channel_or_404(request.user.tenant, channel_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class ChannelTestView(APIView):
    @extend_schema(operation_id="channel_test", summary="Send a test notification",
                   request=None, responses={202: serializers.DeliverySerializer})
    def post(self, request, channel_id):
        """Queue a test message to the channel; its delivery shows in the channel's deliveries."""
        notification = alerting.notification_test_queue(channel=_channel_or_404(request.user.tenant, channel_id))
        return Response(serializers.DeliverySerializer(notification).data, status=status.HTTP_202_ACCEPTED)


class ChannelDeliveriesView(APIView):
    @extend_schema(operation_id="channel_deliveries", summary="List a channel's deliveries",
                   responses=serializers.DeliveryPageSerializer)
    def get(self, request, channel_id):
        """The channel's last 100 notifications, newest first, each with its attempts."""
        tenant = request.user.tenant
        channel = _channel_or_404(tenant, channel_id)
        notifications = selectors.deliveries_list(tenant=tenant, channel=channel)
        return Response(serializers.DeliveryPageSerializer({"results": notifications}).data)


class IncidentListView(APIView):
    @extend_schema(operation_id="incidents_list", summary="List incidents",
                   parameters=[serializers.IncidentQuerySerializer],
                   responses=serializers.IncidentPageSerializer)
    def get(self, request):
        """The tenant's incidents, newest first, filtered; cursor-paged."""
        params = query_params(serializers.IncidentQuerySerializer, request)
        incidents = selectors.incident_list(tenant=request.user.tenant, status=params.get("status"),
                                            series_id=params.get("series_id"), kind=params.get("kind"))
        page, next_page = keyset_page(
            request, incidents, limit=params["limit"], parts=(cursor_time, cursor_id),
            after=lambda rows, moment, incident_id: rows.filter(
                Q(started_at__lt=moment) | Q(started_at=moment, id__lt=incident_id)),
            key=lambda incident: (to_us(incident.started_at), incident.id))
        return Response(serializers.IncidentPageSerializer({"results": page, "next": next_page}).data)


class IncidentDetailView(APIView):
    def _detail(self, tenant, incident_id):
        incident = selectors.incident_get(tenant=tenant, incident_id=incident_id) if incident_id <= MAX_ID else None
        if incident is None:
            raise ApiError(404, "No such incident.")
        events = selectors.incident_events(tenant=tenant, incident_id=incident.id)
        return incident, serializers.IncidentSerializer(incident, context={"events": events}).data

    @extend_schema(operation_id="incident_read", summary="Read an incident", responses=serializers.IncidentSerializer)
    def get(self, request, incident_id):
        """One incident: its state, series, peak severity, anomaly count, whether it is out of band now, and its
        status changes and notes, oldest first."""
        return Response(self._detail(request.user.tenant, incident_id)[1])

    @extend_schema(operation_id="incident_update", summary="Acknowledge, resolve or reopen an incident",
                   request=serializers.StatusChangeSerializer,
                   responses=serializers.IncidentSerializer)
    def patch(self, request, incident_id):
        """Acknowledge, resolve or reopen an incident with a note (scope all)."""
        tenant = request.user.tenant
        data = serializers.StatusChangeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        incident, _ = self._detail(tenant, incident_id)
        alerting.incident_status_set(tenant=tenant, incident=incident,
                                     status=data.validated_data.get("status", incident.status),
                                     actor=api_actor(request), note=data.validated_data.get("note", ""))
        return Response(self._detail(tenant, incident_id)[1])


class SilenceListView(APIView):
    @extend_schema(operation_id="silences_list", summary="List silences", responses=serializers.SilencePageSerializer)
    def get(self, request):
        """The tenant's silences, past, active and scheduled, the latest ending first."""
        silences = selectors.silence_list(tenant=request.user.tenant)
        return Response(serializers.SilencePageSerializer({"results": silences}).data)

    @extend_schema(operation_id="silence_create", summary="Create a silence",
                   request=serializers.SilenceWriteSerializer,
                   responses={201: serializers.SilenceSerializer})
    def post(self, request):
        """A maintenance window: incidents of matching series between start and end notify nobody (scope all)."""
        data = serializers.SilenceWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            silence = alerting.silence_create(tenant=request.user.tenant, data=data.validated_data,
                                              actor=api_actor(request))
        except alerting.TooManySilences as error:
            raise ApiError(400, f"Not created: {error}.", {"end": [str(error)]}) from None
        return Response(serializers.SilenceSerializer(silence).data, status=status.HTTP_201_CREATED)


class SilenceDetailView(APIView):
    @extend_schema(operation_id="silence_delete", summary="Delete a silence",
                   responses={204: OpenApiResponse(description="Deleted.")})
    def delete(self, request, silence_id):
        """Delete a silence: from now on, incidents it covered notify again (scope all)."""
        silence = selectors.silence_get(tenant=request.user.tenant, silence_id=silence_id) if silence_id <= MAX_ID else None
        if silence is None:
            raise ApiError(404, "No such silence.")
        alerting.silence_delete(silence=silence)
        return Response(status=status.HTTP_204_NO_CONTENT)
